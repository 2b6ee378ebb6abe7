package objfile

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (or install.ErrRefused, for an instruction that cannot be probed) with
// %w and a lowercase reason a person can read; test with errors.Is.
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
)
