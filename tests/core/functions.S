# The relocation corpus: hand-written prologues that exercise each rewrite rule of
# core/relocator.cpp. Each function is a C function of (int) -> int (System V ABI).
# Offsets are in brackets; "overwritten" is what a 5-byte entry jump displaces.
        .intel_syntax noprefix
        .text

        .data
        .p2align 3
        .globl reloc_data
reloc_data:     .long 40
        .globl reloc_store
reloc_store:    .long 0
        .text

# jcc rel8 in the prologue: x > 0 ? 1 : -1. Overwritten: test, jle, mov (9 bytes).
        .globl reloc_jcc8
        .type reloc_jcc8, @function
        .p2align 4
reloc_jcc8:
        .cfi_startproc
        test edi, edi           # [0] 85 ff
        jle 1f                  # [2] 7e 06     -> becomes 0f 8e rel32
        mov eax, 1              # [4] b8 01 00 00 00
        ret                     # [9]
1:      mov eax, -1             # [10]
        ret
        .cfi_endproc
        .size reloc_jcc8, .-reloc_jcc8

# A tail call as the first instruction: jmp rel32 to another function.
        .globl reloc_jmp32
        .type reloc_jmp32, @function
        .p2align 4
reloc_jmp32:
        .cfi_startproc
        jmp reloc_helper        # [0] e9 rel32 (5 bytes: a whole function)
        .cfi_endproc
        .size reloc_jmp32, .-reloc_jmp32

# call rel32 in the prologue: becomes push <original return>; jmp helper.
        .globl reloc_call
        .type reloc_call, @function
        .p2align 4
reloc_call:
        .cfi_startproc
        sub rsp, 8              # [0] 48 83 ec 08
        .cfi_adjust_cfa_offset 8
        call reloc_helper       # [4] e8 rel32: returns to [9], past the jump
        add eax, 1              # [9]
        add rsp, 8
        .cfi_adjust_cfa_offset -8
        ret
        .cfi_endproc
        .size reloc_call, .-reloc_call

# RIP-relative load: x + reloc_data.
        .globl reloc_rip_load
        .type reloc_rip_load, @function
        .p2align 4
reloc_rip_load:
        .cfi_startproc
        mov eax, DWORD PTR [rip + reloc_data]   # [0] 8b 05 disp32
        add eax, edi
        ret
        .cfi_endproc
        .size reloc_rip_load, .-reloc_rip_load

# RIP-relative lea: *(&reloc_data) + 2x.
        .globl reloc_rip_lea
        .type reloc_rip_lea, @function
        .p2align 4
reloc_rip_lea:
        .cfi_startproc
        lea rax, [rip + reloc_data]             # [0] 48 8d 05 disp32
        mov eax, DWORD PTR [rax]
        add eax, edi
        add eax, edi
        ret
        .cfi_endproc
        .size reloc_rip_lea, .-reloc_rip_lea

# RIP-relative store: reloc_store = x; returns x + 1.
        .globl reloc_rip_store
        .type reloc_rip_store, @function
        .p2align 4
reloc_rip_store:
        .cfi_startproc
        mov DWORD PTR [rip + reloc_store], edi  # [0] 89 3d disp32
        lea eax, [rdi + 1]
        ret
        .cfi_endproc
        .size reloc_rip_store, .-reloc_rip_store

# endbr64 start: x + 3.
        .globl reloc_endbr
        .type reloc_endbr, @function
        .p2align 4
reloc_endbr:
        .cfi_startproc
        endbr64                 # [0] f3 0f 1e fa
        lea eax, [rdi + 3]      # [4] 8d 47 03
        ret
        .cfi_endproc
        .size reloc_endbr, .-reloc_endbr

# A backward branch to the entry inside the prologue: counts x down, returns 7.
        .globl reloc_loop_entry
        .type reloc_loop_entry, @function
        .p2align 4
reloc_loop_entry:
        .cfi_startproc
1:      dec edi                 # [0] ff cf
        jnz 1b                  # [2] 75 fc     -> internal: to the clone's start
        mov eax, 7              # [4]
        ret
        .cfi_endproc
        .size reloc_loop_entry, .-reloc_loop_entry

# jmp rel8 ending the prologue early, followed by int3 padding: 2x + 1.
        .globl reloc_jmp8_pad
        .type reloc_jmp8_pad, @function
        .p2align 4
reloc_jmp8_pad:
        .cfi_startproc
        lea eax, [rdi + rdi]    # [0] 8d 04 3f
        jmp 1f                  # [3] eb 03     -> jmp rel32 to [8]
        .byte 0xcc, 0xcc, 0xcc  # [5] padding nothing executes
1:      add eax, 1              # [8]
        ret
        .cfi_endproc
        .size reloc_jmp8_pad, .-reloc_jmp8_pad

# Shorter than the jump but followed by alignment padding: x * 2 (3 bytes).
        .globl reloc_short_padded
        .type reloc_short_padded, @function
        .p2align 4
reloc_short_padded:
        .cfi_startproc
        lea eax, [rdi + rdi]    # [0] 8d 04 3f
        ret                     # [3] c3, then int3 padding to 16
        .cfi_endproc
        .size reloc_short_padded, .-reloc_short_padded
        .p2align 4, 0xcc

# Refused: shorter than the jump and directly followed by another function.
        .globl reloc_short
        .type reloc_short, @function
        .p2align 4
reloc_short:
        .cfi_startproc
        xor eax, eax            # [0] 31 c0
        ret                     # [2] c3: the next function starts at [3]
        .cfi_endproc
        .size reloc_short, .-reloc_short
        .globl reloc_after_short
        .type reloc_after_short, @function
reloc_after_short:
        .cfi_startproc
        mov eax, 1
        ret
        .cfi_endproc
        .size reloc_after_short, .-reloc_after_short

# Refused: the loop branches back to [2], inside the 6 overwritten bytes.
        .globl reloc_branch_into
        .type reloc_branch_into, @function
        .p2align 4
reloc_branch_into:
        .cfi_startproc
        xor eax, eax            # [0] 31 c0
1:      add eax, edi            # [2] 01 f8
        dec edi                 # [4] ff cf
        jnz 1b                  # [6] 75 fa     -> [2]
        ret
        .cfi_endproc
        .size reloc_branch_into, .-reloc_branch_into

# Refused: jrcxz has no rel32 form.
        .globl reloc_jrcxz
        .type reloc_jrcxz, @function
        .p2align 4
reloc_jrcxz:
        .cfi_startproc
        mov ecx, edi            # [0] 89 f9
        jrcxz 1f                # [2] e3 ..
        mov eax, 1
        ret
1:      xor eax, eax
        ret
        .cfi_endproc
        .size reloc_jrcxz, .-reloc_jrcxz

# The callee of reloc_call and reloc_jmp32: x * 10.
        .globl reloc_helper
        .type reloc_helper, @function
        .p2align 4
reloc_helper:
        .cfi_startproc
        imul eax, edi, 10
        ret
        .cfi_endproc
        .size reloc_helper, .-reloc_helper

# A replacement version for every corpus function: returns -x.
        .globl reloc_negate
        .type reloc_negate, @function
        .p2align 4
reloc_negate:
        .cfi_startproc
        mov eax, edi
        neg eax
        ret
        .cfi_endproc
        .size reloc_negate, .-reloc_negate

        .section .note.GNU-stack,"",@progbits
