# bash completion for vi, the virtual machine toolkit.
# Candidates come from the binary itself (vi __complete), so verbs, options
# and VM names are always those of the installed version.
_vi_vm()
{
	local cur=${COMP_WORDS[COMP_CWORD]} out
	local IFS=$'\n'
	out=$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return
	case $out in
	__files__)
		compopt -o default 2>/dev/null
		COMPREPLY=()
		;;
	__dirs__)
		COMPREPLY=($(compgen -d -- "$cur"))
		;;
	*)
		COMPREPLY=($out)
		;;
	esac
}
complete -F _vi_vm vi
