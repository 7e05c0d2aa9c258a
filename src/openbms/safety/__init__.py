"""Safety: safe-operating-area limits, the contactor state machine, charging control and fault detection."""
