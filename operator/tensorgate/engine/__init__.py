"""Pure decision logic: no I/O, no clock, no TensorFlow. Tested with tables of cases."""
