"""The running BMS: sources of measurements, the per-sample BMS, and the loop behind `openbms serve`."""
