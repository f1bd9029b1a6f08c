"""What a roadmap looks like to a reader: the ``describe`` text, the layer view both it and the
block diagrams draw from, the diagrams, and the complexity table beside the paper's."""
