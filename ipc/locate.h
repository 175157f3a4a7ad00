/* locate.h: finding netrun's own files (netrun-worker, libnetrun-pyinproc.so, scripts) from
 * wherever the running program is: beside it, at a path relative to it (an installed tree:
 * bin/ and lib/netrun/), at the install prefix (a user's program linking libnetrun), or in
 * the build tree (tests, a checkout's build/). */
#ifndef NR_LOCATE_H
#define NR_LOCATE_H

/* Returns the first of the n candidates that access(2) allows for mode (X_OK, R_OK, F_OK),
 * as a new string (free it), or NULL. A candidate that starts with "$EXE/" is taken
 * relative to the directory of /proc/self/exe, one that starts with "$LIB/" relative to the
 * directory of the file this code was loaded from (libnetrun.so where it is installed, so
 * an installed tree can be moved); NULL candidates are skipped. */
char *nr__locate(const char *const *candidates, int n, int mode);

#endif
