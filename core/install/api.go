package install

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them with %w and a lowercase reason a person can read; test with errors.Is.
var (
	// ErrNotELF: Open was given a file that is not an ELF executable or
	// shared object.
	ErrNotELF = errors.New("not an ELF executable or shared object")
	// ErrNotX86_64: Open was given an ELF file for another machine or class.
	ErrNotX86_64 = errors.New("not an x86-64 ELF file")
	// ErrSyntax: Resolve could not parse the location string.
	ErrSyntax = errors.New("invalid location syntax")
	// ErrNoSymbol: Resolve found no (unambiguous) function symbol of that name.
	ErrNoSymbol = errors.New("no such function symbol")
	// ErrNotExecutable: the offset is not inside an executable PT_LOAD
	// segment's file range, or is past the end of the file.
	ErrNotExecutable = errors.New("offset not in executable code")
	// ErrPastSymbol: SYMBOL+OFF with OFF at or past the symbol's size.
	ErrPastSymbol = errors.New("offset past the end of the symbol")
	// ErrNotBoundary: Analyze found the offset inside an instruction of the
	// function that contains it.
	ErrNotBoundary = errors.New("offset not on an instruction boundary")
	// ErrRefused: the instruction cannot be probed (the kernel's uprobes
	// refuse it too, or it can be neither emulated nor relocated).
	ErrRefused = errors.New("instruction cannot be probed")
	// ErrSlotRange: SlotCode was asked for a slot from which a RIP-relative
	// operand of the relocated instruction is out of reach (±2 GiB).
	ErrSlotRange = errors.New("slot out of range of the instruction's rip-relative operand")
)
