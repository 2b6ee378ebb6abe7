// Package objfile is the probed file: an opened x86-64 ELF executable or
// shared object (PIE or not, stripped or not) in which probe locations are
// resolved and the instruction at an offset is checked and analysed.
//
// It owns:
//
//   - elf.go: Open, the executable segments and the function symbols of
//     .symtab and .dynsym; Resolve "0x4a0", "1184", "sym", "sym+0x10" to a
//     file offset (st_value - PT_LOAD.Vaddr + PT_LOAD.Off of the segment
//     holding the symbol), Symbolize an offset back.
//   - glob.go: wildcard patterns ('*', '?') and Functions, the function
//     symbols a pattern matches.
//   - analyze.go: Analyze, the instruction at a file offset read from the
//     FILE (never from a process): outside executable code or inside an
//     instruction of the function that contains it is refused, the rest is
//     core/install's analysis.
//   - returns.go: IsGo (a .go.buildinfo section or runtime.* symbols: a
//     file whose return addresses must not be rewritten) and Returns, the
//     offsets of every near return instruction of a function, decoded from
//     its start within its size (checked against objdump on every function
//     of the C fixtures and of a Go binary, runtime included).
//   - jump.go: JumpAt, whether a jump site can replace the probe (the
//     rules that need the file, on top of install.AnalyzeJump): the
//     displaced range inside its function, no indirect jmp in the
//     function, no direct branch into the range from anywhere in the file.
//     Analyze puts the decision into Plan.Jump / Plan.NoJump.
//   - scan.go, fastlen.go: the branch index JumpAt searches, one linear
//     scan of all the executable code per File (lazy, sync.Once),
//     resynchronised at every known start, with a table-driven length
//     decoder that defers to x86asm for whatever it does not know (about
//     40 ms for libpython3.11, against 250 ms with x86asm alone).
//
// It imports core/install, golang.org/x/arch/x86/x86asm and the standard
// library (debug/elf, os). A File
// is immutable after Open (but for its lazily built branch index) and safe
// for concurrent use; Close releases the
// open file. Errors wrap one of the sentinel errors of api.go or
// install.ErrRefused.
package objfile
