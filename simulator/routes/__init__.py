"""The simulated Scope API, one router per area, plus the ground-truth routes under /_sim/."""
