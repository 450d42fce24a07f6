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

// func hintSlot(line uintptr, n, off int, mask, want uint32) uint32
TEXT ·hintSlot(SB), NOSPLIT|NOFRAME, $0-36
	MOVQ	line+0(FP), SI
	MOVQ	n+8(FP), DX
	MOVL	mask+24(FP), AX
	MOVQ	AX, X5
	PSHUFD	$0, X5, X5
	MOVL	want+28(FP), AX
	MOVQ	AX, X4
	PSHUFD	$0, X4, X4
	PXOR	X6, X6
	XORL	R8, R8
	XORL	R9, R9
	GROUP(0, 0)
	GROUP(16, 4)
	GROUP(32, 8)
	GROUP(48, 12)
	CMPQ	DX, $2
	JGE	second
	ORL	$0xffff0000, R9 // the window ends with the line
	JMP	scanned
second:
	GROUP(64, 16)
	GROUP(80, 20)
	GROUP(96, 24)
	GROUP(112, 28)
scanned:
	// Drop the slots before the home slot: match and empty &^= 1<<off - 1.
	MOVQ	off+16(FP), CX
	MOVL	$-1, AX
	SHLL	CX, AX
	ANDL	AX, R8
	ANDL	AX, R9
	// Keep the matches before the first empty slot.
	TESTL	R9, R9
	JZ	nomask
	BSFL	R9, CX
	MOVL	$1, AX
	SHLL	CX, AX
	DECL	AX
	ANDL	AX, R8
nomask:
	XORL	AX, AX
	TESTL	R8, R8
	JZ	hdone
	BSFL	R8, CX
	MOVL	(SI)(CX*4), AX
hdone:
	MOVL	AX, ret+32(FP)
	RET
