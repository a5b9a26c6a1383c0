"""The simulation: guests, browsers, sessions and flows; pure and seeded, no I/O, no clock."""
