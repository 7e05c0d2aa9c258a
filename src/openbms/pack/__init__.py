"""Pack layer: configuration-free estimation of a series string (bar-delta), balancing, and a simulated pack."""
