"""The pipeline: loaded inputs through cleaning and fingerprinting to the index, a chunk at
a time, with the next chunk prepared while Redis runs the last."""
