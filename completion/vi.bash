# bash completion for vi, the virtual machine toolkit.
# Candidates come from the binary itself (vi __complete), so verbs, options
# and VM names are always those of the installed version.

# Whether the vi that would run is this toolkit, by a signature in the file,
# without running it: the editor may stand first in PATH, and `vim __complete`
# would take over the terminal. The answer is kept per file and change time.
_vi_is_toolkit()
{
	local path stamp
	path=$(type -P -- "$1") || return 1
	stamp=$(stat -L -c %Y-%i -- "$path" 2>/dev/null) || return 1
	[[ ${_vi_checked-} == "$path $stamp "* ]] && return "${_vi_checked##* }"
	LC_ALL=C grep -qsF 'vi-complete-protocol 1' -- "$path" </dev/null
	local rc=$?
	_vi_checked="$path $stamp $rc"
	return $rc
}

_vi_vm()
{
	local cur=${COMP_WORDS[COMP_CWORD]} out
	local IFS=$'\n'
	_vi_is_toolkit "${COMP_WORDS[0]}" || return
	out=$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" </dev/null 2>/dev/null) ||
		return
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
