file(REMOVE_RECURSE
  "CMakeFiles/nr_proto.dir/gen/caffe.pb-c.c.o"
  "CMakeFiles/nr_proto.dir/gen/caffe.pb-c.c.o.d"
  "CMakeFiles/nr_proto.dir/status.c.o"
  "CMakeFiles/nr_proto.dir/status.c.o.d"
  "gen/caffe.pb-c.c"
  "gen/caffe.pb-c.h"
  "libnr_proto.a"
  "libnr_proto.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/nr_proto.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
