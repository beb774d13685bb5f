"""Reading user files safely: paths under the data roots, archives, and image decoding."""
