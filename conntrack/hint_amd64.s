#include "textflag.h"

// func prefetchLines(addrs *uintptr, n int)
TEXT ·prefetchLines(SB), NOSPLIT|NOFRAME, $0-16
	MOVQ	addrs+0(FP), SI
	MOVQ	n+8(FP), CX
	TESTQ	CX, CX
	JLE	done
loop:
	MOVQ	(SI), AX
	PREFETCHT0	(AX)
	ADDQ	$8, SI
	DECQ	CX
	JNZ	loop
done:
	RET

// func peek32(p *uint32) uint32
TEXT ·peek32(SB), NOSPLIT|NOFRAME, $0-12
	MOVQ	p+0(FP), AX
	MOVL	(AX), AX
	MOVL	AX, ret+8(FP)
	RET

// GROUP scans the 4 slots at off(SI) into bits sh..sh+3 of R8 (match) and
// R9 (empty). X4 holds want, X5 mask, X6 zero in every lane.
#define GROUP(off, sh) \
	MOVOU	off(SI), X0 \
	MOVO	X0, X1 \
	PAND	X5, X0 \
	PCMPEQL	X4, X0 \
	PCMPEQL	X6, X1 \
	MOVMSKPS	X0, AX \
	MOVMSKPS	X1, BX \
	SHLL	$sh, AX \
	SHLL	$sh, BX \
	ORL	AX, R8 \
	ORL	BX, R9

// func hintSlot(home uintptr, mask, want, valid uint32) (slot, slot2 uint32, more bool)
TEXT ·hintSlot(SB), NOSPLIT|NOFRAME, $0-33
	MOVQ	home+0(FP), SI
	MOVL	mask+8(FP), AX
	MOVQ	AX, X5
	PSHUFD	$0, X5, X5
	MOVL	want+12(FP), AX
	MOVQ	AX, X4
	PSHUFD	$0, X4, X4
	PXOR	X6, X6
	XORL	R8, R8
	XORL	R9, R9
	GROUP(0, 0)
	GROUP(16, 4)
	GROUP(32, 8)
	GROUP(48, 12)
	// Only the window's slots of this page's index count: valid has their bits.
	MOVL	valid+16(FP), AX
	ANDL	AX, R8
	ANDL	AX, R9
	// more: the window's valid slots hold neither a match nor an empty slot.
	MOVL	R8, AX
	ORL	R9, AX
	SETEQ	more+32(FP)
	// Keep the matches before the first empty slot: match &= (empty & -empty) - 1,
	// which keeps them all when no slot is empty.
	MOVL	R9, AX
	NEGL	AX
	ANDL	R9, AX
	DECL	AX
	ANDL	AX, R8
	XORL	AX, AX
	XORL	DX, DX
	TESTL	R8, R8
	JZ	hdone
	BSFL	R8, CX
	MOVL	(SI)(CX*4), AX
	// The second match, if any: match &= match - 1 clears the first.
	LEAL	-1(R8), BX
	ANDL	BX, R8
	JZ	hdone
	BSFL	R8, CX
	MOVL	(SI)(CX*4), DX
hdone:
	MOVL	AX, slot+24(FP)
	MOVL	DX, slot2+28(FP)
	RET

// func prefetchWindow(home uintptr)
TEXT ·prefetchWindow(SB), NOSPLIT|NOFRAME, $0-8
	MOVQ	home+0(FP), AX
	PREFETCHT0	(AX)
	PREFETCHT0	60(AX)
	RET
