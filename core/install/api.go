package install

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them with %w and a lowercase reason a person can read; test with errors.Is.
var (
	// ErrRefused: the instruction cannot be probed (the kernel's uprobes
	// refuse it too, or it can be neither emulated nor relocated).
	ErrRefused = errors.New("instruction cannot be probed")
	// ErrSlotRange: SlotCode was asked for a slot from which a RIP-relative
	// operand of the relocated instruction is out of reach (±2 GiB).
	ErrSlotRange = errors.New("slot out of range of the instruction's rip-relative operand")
)
