# The parasite routine of parasite_code.go, in GNU as syntax. The test
# TestParasiteCodeAssembles assembles this file and compares the bytes.
#
# Registers: rbx = the thread's area in the scratch (offsets: parasite.go),
# r15 = the process's end of the control socket; r12/r13 = table and
# number of entries for `table`. Every path the thread can take without
# amber ends in `restore`: the thread returns to its frozen registers,
# signal mask and FPU state through rt_sigreturn.
	.intel_syntax noprefix
	.text
	.globl setup, wait, close_table, table, restore, sigreturn, unmap
setup:				# the leader, stepped by amber: make the control socket
	mov eax, 53		# socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0, sv)
	mov edi, 1
	mov esi, 0x80001
	xor edx, edx
	lea r10, [rbx+0x28]
	syscall
	test rax, rax
	jnz affinity
	movsxd r15, dword ptr [rbx+0x28]
	mov eax, dword ptr [rbx+0x2c]
	mov dword ptr [rbx+0x30], eax	# amber's end: restore closes it
	jmp restore		# reached only if amber died after socketpair
wait:				# sleep until amber interrupts, or dies
	mov eax, 271		# ppoll(&pollfd, 1, NULL, NULL, 8)
	lea rdi, [rbx+0x10]
	mov esi, 1
	xor edx, edx
	xor r10d, r10d
	mov r8d, 8
	syscall
	jmp restore		# it returns only once amber is gone
close_table:			# amber has its copy of its end (rdi): close ours
	mov eax, 3
	syscall
table:				# run r13 entries from r12, stop at the first error
	test r13, r13
	jz done
	mov rax, [r12]
	mov rdi, [r12+8]
	mov rsi, [r12+16]
	mov rdx, [r12+24]
	mov r10, [r12+32]
	mov r8, [r12+40]
	mov r9, [r12+48]
	syscall
	mov [r12+56], rax
	cmp rax, -4095
	jae done
	add r12, 64
	dec r13
	jmp table
done:
	mov [rbx], r13		# entries left: 0 when all ran
	mov [rbx+8], r12	# the entry it stopped at
	mov eax, 44		# sendto(ctl, &byte, 1, MSG_NOSIGNAL|MSG_DONTWAIT, NULL, 0)
	mov rdi, r15
	lea rsi, [rbx+0x40]
	mov edx, 1
	mov r10d, 0x4040
	xor r8d, r8d
	xor r9d, r9d
	syscall
	jmp wait
restore:
	cmp qword ptr [rbx+0x38], 0	# only the leader holds descriptors to close
	je affinity
	mov eax, 3
	mov rdi, r15
	syscall
	movsxd rdi, dword ptr [rbx+0x30]
	test rdi, rdi
	js affinity
	mov eax, 3
	syscall
affinity:
	mov eax, 203		# sched_setaffinity(0, 128, cpus)
	xor edi, edi
	mov esi, 128
	lea rdx, [rbx+0x48]
	syscall
sigreturn:
	lea rsp, [rbx+0x408]	# the frame's ucontext
	mov eax, 15		# rt_sigreturn
	syscall
	ud2
unmap:				# amber's last call: munmap of the scratch
	syscall
	ud2
