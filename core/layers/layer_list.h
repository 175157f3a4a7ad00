/* Every layer type netrun knows, one line each: NR_LAYER(<const nr_layer_type symbol>).
 * Adding a layer = one new file in core/layers/ + one line here. */
NR_LAYER(nr_layer_convolution)
NR_LAYER(nr_layer_deconvolution)
