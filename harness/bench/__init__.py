"""`bench`: the matrix of cells, the pyperf worker side (cells) and the manager (main), metadata."""
