package fetch

import "github.com/uprobefs/uprobefs/core/install"

// A register operand: which field of install.Regs, and which bits of it.
type register struct {
	name  string
	field func(r *install.Regs) *uint64
	width uint8 // bits: 64, 32, 16 or 8
	shift uint8 // 8 for ah, bh, ch, dh
}

func (r register) get(regs *install.Regs) uint64 {
	if regs == nil {
		return 0
	}
	v := *r.field(regs) >> r.shift
	if r.width < 64 {
		v &= 1<<r.width - 1
	}
	return v
}

// registers maps the name after '%' to a register.
//
// Resolved: tracefs on x86-64 (arch/x86/kernel/ptrace.c, regoffset_table)
// accepts exactly the pt_regs names r8..r15, ax, bx, cx, dx, si, di, bp, sp,
// ip, flags, cs, ss and orig_ax, each the whole 64-bit register: %ax is rax,
// not its low 16 bits. We accept those with that meaning, and besides them
// the assembler's names: rax..r15, rip, rflags/eflags, the 32-bit eax..r15d,
// the 16-bit r8w..r15w (ax..sp keep tracefs's meaning, so the legacy 16-bit
// registers have no name: use %ax:u16), the 8-bit al..r15b and ah..dh, and
// fs_base, gs_base, ds, es, fs, gs of user_regs_struct.
var registers = func() map[string]register {
	m := map[string]register{}
	add := func(name string, width, shift uint8, f func(r *install.Regs) *uint64) {
		m[name] = register{name: name, field: f, width: width, shift: shift}
	}
	type gpr struct {
		tracefs, r64, r32, r16, r8, high string
		f                                func(r *install.Regs) *uint64
	}
	gprs := []gpr{
		{"ax", "rax", "eax", "", "al", "ah", func(r *install.Regs) *uint64 { return &r.Rax }},
		{"bx", "rbx", "ebx", "", "bl", "bh", func(r *install.Regs) *uint64 { return &r.Rbx }},
		{"cx", "rcx", "ecx", "", "cl", "ch", func(r *install.Regs) *uint64 { return &r.Rcx }},
		{"dx", "rdx", "edx", "", "dl", "dh", func(r *install.Regs) *uint64 { return &r.Rdx }},
		{"si", "rsi", "esi", "", "sil", "", func(r *install.Regs) *uint64 { return &r.Rsi }},
		{"di", "rdi", "edi", "", "dil", "", func(r *install.Regs) *uint64 { return &r.Rdi }},
		{"bp", "rbp", "ebp", "", "bpl", "", func(r *install.Regs) *uint64 { return &r.Rbp }},
		{"sp", "rsp", "esp", "", "spl", "", func(r *install.Regs) *uint64 { return &r.Rsp }},
		{"r8", "", "r8d", "r8w", "r8b", "", func(r *install.Regs) *uint64 { return &r.R8 }},
		{"r9", "", "r9d", "r9w", "r9b", "", func(r *install.Regs) *uint64 { return &r.R9 }},
		{"r10", "", "r10d", "r10w", "r10b", "", func(r *install.Regs) *uint64 { return &r.R10 }},
		{"r11", "", "r11d", "r11w", "r11b", "", func(r *install.Regs) *uint64 { return &r.R11 }},
		{"r12", "", "r12d", "r12w", "r12b", "", func(r *install.Regs) *uint64 { return &r.R12 }},
		{"r13", "", "r13d", "r13w", "r13b", "", func(r *install.Regs) *uint64 { return &r.R13 }},
		{"r14", "", "r14d", "r14w", "r14b", "", func(r *install.Regs) *uint64 { return &r.R14 }},
		{"r15", "", "r15d", "r15w", "r15b", "", func(r *install.Regs) *uint64 { return &r.R15 }},
	}
	for _, g := range gprs {
		for _, n := range []struct {
			name         string
			width, shift uint8
		}{{g.tracefs, 64, 0}, {g.r64, 64, 0}, {g.r32, 32, 0}, {g.r16, 16, 0}, {g.r8, 8, 0}, {g.high, 8, 8}} {
			if n.name != "" {
				add(n.name, n.width, n.shift, g.f)
			}
		}
	}
	rip := func(r *install.Regs) *uint64 { return &r.Rip }
	flags := func(r *install.Regs) *uint64 { return &r.Eflags }
	add("ip", 64, 0, rip)
	add("rip", 64, 0, rip)
	add("flags", 64, 0, flags)
	add("rflags", 64, 0, flags)
	add("eflags", 64, 0, flags)
	add("orig_ax", 64, 0, func(r *install.Regs) *uint64 { return &r.OrigRax })
	add("cs", 64, 0, func(r *install.Regs) *uint64 { return &r.Cs })
	add("ss", 64, 0, func(r *install.Regs) *uint64 { return &r.Ss })
	add("ds", 64, 0, func(r *install.Regs) *uint64 { return &r.Ds })
	add("es", 64, 0, func(r *install.Regs) *uint64 { return &r.Es })
	add("fs", 64, 0, func(r *install.Regs) *uint64 { return &r.Fs })
	add("gs", 64, 0, func(r *install.Regs) *uint64 { return &r.Gs })
	add("fs_base", 64, 0, func(r *install.Regs) *uint64 { return &r.FsBase })
	add("gs_base", 64, 0, func(r *install.Regs) *uint64 { return &r.GsBase })
	return m
}()

// TracefsRegisters is the register names tracefs accepts on x86-64, in
// regoffset_table's order; every one is accepted here with its meaning.
var TracefsRegisters = []string{
	"r15", "r14", "r13", "r12", "r11", "r10", "r9", "r8",
	"bx", "cx", "dx", "si", "di", "bp", "ax", "orig_ax", "ip", "cs", "flags", "sp", "ss",
}
