"""The pykka actors and the wire between processes."""
