"""numbanet's Keras-style training API over the kernel backends."""
