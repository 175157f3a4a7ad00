# Empty dependencies file for nr_proto.
# This may be replaced when dependencies are built.
