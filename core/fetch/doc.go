// Package fetch is the fetch arguments of a probe: tracefs's FETCHARGS
// grammar (Documentation/trace/uprobetracer.rst, kernel/trace/trace_probe.c)
// parsed into Args, and an Arg evaluated at a hit and formatted as the
// kernel's trace output prints it.
//
// It owns:
//
//   - parse.go, types.go, regs.go, kstrto.go: Parse, with tracefs's rules
//     and limits: %REG, @ADDR, @+OFFSET, $stackN, $stack, $retval (return
//     probes only), $comm, $argN, +|-[u]OFFS(FETCHARG) nested, \IMM,
//     \"STRING", NAME=FETCHARG, :TYPE (u8..u64, s8..s64, x8..x64, char,
//     string, ustring, symbol, b<width>@<offset>/<container>); at most
//     MaxArgs arguments, MaxArgLen bytes each after NAME=, names of at most
//     MaxNameLen bytes, MaxDerefs memory reads; numbers as kstrtoul and
//     kstrtol read them.
//   - eval.go: Arg.Eval and Format, from a Context: registers
//     (core/install.Regs), a Memory that reports faults, comm, the return
//     value, a symbolizer and a file-offset resolver.
//   - errors.go: the *Error of a refused argument (its index, the faulty
//     token and where, and tracefs's reason), wrapping ErrInvalid.
//   - hist.go: Hist, a log2 latency histogram printed as bpftrace's hist().
//
// It imports core/install (for Regs) and the standard library only, does no
// I/O of its own and is safe for concurrent use (Args are immutable; Hist
// locks).
//
// # What is as tracefs
//
// The forms tracefs accepts for a uprobe on x86-64 are accepted with their
// meaning and formatting, and its refusals are made here with its reasons
// (TestParseErrors), as far as the tests reach: TestKernelParser writes each of the tests'
// arguments (about 230, each on an entry and a return probe) to the running
// kernel's uprobe_events on a private fixture, never enabled, and checks
// that the kernel accepts the same ones, lists them as Arg.String does, and
// refuses the others with the same reason, but for the differences below.
// Values print as tracefs prints them, faults included (see Eval):
// TestKernelValues puts the kernel's uprobe and uretprobe with 48 fetch
// arguments (integers of every type and sign, bitfields, nested
// dereferences, strings, a bad pointer, @+OFFSET, $comm, $retval) on a
// private fixture, and checks that Format gives the kernel's trace line
// byte for byte from the same registers and the fixture's memory.
//
// # Where it differs, and why
//
//   - $argN (the System V integer arguments: rdi, rsi, rdx, rcx, r8, r9,
//     then the stack above the return address) is accepted on every probe;
//     tracefs has it for kprobes at a function entry only. It is the
//     function's argument only at the function's entry (or, for a return
//     probe, if the caller evaluates it at the entry).
//   - The symbol type is accepted on every probe and printed by the
//     caller's symbolizer (the probed file's symbols); tracefs's uprobes
//     refuse it since Linux 6.x ("Unknown type is specified"), and older
//     ones printed the raw address (%pS knows only kernel symbols).
//   - Register names: besides tracefs's (each the whole 64-bit register:
//     %ax is rax), the assembler's names rax, eax, r8d, r8w, al, ah, ...
//     (regs.go says which).
//   - Refused although tracefs is lax: text after a dereference's last ')'
//     (tracefs ignores it), a dereference offset outside int32 and $stackN
//     with N of 2^32 or more (tracefs cuts both silently).
//   - Refused, not implemented: array types (+0(%di):u32[4]); tracefs's
//     symstr, %pd and %pD are for kprobes, @SYMBOL and BTF names are
//     refused by tracefs's uprobes too.
//   - An immediate string \"..." prints (fault), as in tracefs's uprobes
//     (which copy it as user memory); kprobes print it.
//   - A dereference before the last one that faults gives (fault); tracefs
//     leaves the field unwritten (it shows whatever its buffer held).
package fetch
