file(REMOVE_RECURSE
  "libnr_proto.a"
)
