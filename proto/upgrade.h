/* upgrade.h: bring legacy Caffe nets and solvers up to the current schema, as Caffe's
 * UpgradeNetAsNeeded / UpgradeSolverAsNeeded do after every read. The upgraders work on
 * messages in memory; the loaders that read, parse and upgrade a file are in load.h.
 *
 * Net upgrade steps, in Caffe's order (see docs/prototxt.md):
 *   1. V0 layers (a `layers` entry with the inner `layer` message) -> V1, folding
 *      `padding` layers into the following convolution;
 *   2. V1 DATA / IMAGE_DATA / WINDOW_DATA: scale, mean_file, crop_size, mirror moved from
 *      the data params into transform_param;
 *   3. V1 `layers { type: CONVOLUTION }` -> `layer { type: "Convolution" }` (blobs moved,
 *      blobs_lr / weight_decay / param / blob_share_mode -> param { }, include/exclude,
 *      loss_weight and every *_param kept);
 *   4. `input:` + `input_dim:` / `input_shape { }` -> a leading Input layer named "input";
 *   5. BatchNorm layers with exactly 3 param specs get lr_mult = decay_mult = 0;
 *   6. netrun extra: blobs with legacy num/channels/height/width get an equivalent 4-axis
 *      `shape` (readers compare with nr_blobproto_shape_compatible).
 * Solver: enum `solver_type` -> string `type`; nets embedded in the solver upgraded too.
 * Upgrading an upgraded message changes nothing (*changed = 0).
 *
 * Ownership: the upgraders modify the message in place (legacy parts are freed).
 */
#ifndef NR_UPGRADE_H
#define NR_UPGRADE_H

#include "caffe.pb-c.h"
#include "nr_status.h"

/* Upgrades net in place. *changed (may be NULL) is set to 1 if anything changed.
 * NR_ERR_INPUT for nets Caffe also refuses (both `layer` and `layers`, an unknown V0
 * type, input_dim not 4 per input, ...), NR_ERR_NOMEM. On error the net may be half
 * upgraded: free it. */
nr_status nr_upgrade_net(Caffe__NetParameter *net, int *changed, nr_error *err);

/* Upgrades a solver in place (solver_type -> type; embedded nets). NR_ERR_INPUT if both
 * solver_type and type are given. */
nr_status nr_upgrade_solver(Caffe__SolverParameter *solver, int *changed, nr_error *err);

/* Caffe's snapshot_prefix rule applied when a solver file is loaded: unset -> the solver
 * path without extension; an existing directory -> "<dir>/<solver file stem>". */
nr_status nr_solver_default_snapshot_prefix(Caffe__SolverParameter *solver,
                                            const char *solver_path, nr_error *err);

/* The type string of a V1 LayerType enum value ("" for NONE, NULL if unknown). */
const char *nr_v1_layer_type_name(int v1_type);

#endif
