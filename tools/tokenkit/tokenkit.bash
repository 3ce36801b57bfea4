# bash completion for tokenkit(1); installed as
# share/bash-completion/completions/tokenkit.
#
# Commands and their options come from `tokenkit --help` (so a new command
# completes without editing this file), reader names from
# `tokenkit readers --json` (bounded by `timeout`: a PC/SC daemon that does
# not answer must not hang the shell).

_tokenkit_help() {
	"${_tokenkit_cmd:-tokenkit}" --help 2>/dev/null
}

# Reader names, one a line, JSON escapes of quotes and backslashes undone.
_tokenkit_readers() {
	timeout 3 "${_tokenkit_cmd:-tokenkit}" readers --json 2>/dev/null |
		sed -n 's/.*"reader": "\(\([^"\\]\|\\.\)*\)".*/\1/p' |
		sed -e 's/\\"/"/g' -e 's/\\\\/\\/g'
}

# Complete the current word from reader names: each name that starts with
# what was typed. Typed text is unquoted by hand, never evaluated (it may hold
# $(...)); inside an opening quote the name goes back as it is, otherwise
# quoted for the shell.
_tokenkit_complete_readers() {
	local cur=$1 typed quoted=0 name
	case $cur in
	\'* | \"*)
		typed=${cur:1}
		quoted=1
		;;
	*) typed=$(sed 's/\\\(.\)/\1/g' <<<"$cur") ;;
	esac
	while IFS= read -r name; do
		[[ -n $name && $name == "$typed"* ]] || continue
		if ((quoted)); then
			COMPREPLY+=("$name")
		else
			COMPREPLY+=("$(printf '%q' "$name")")
		fi
	done < <(_tokenkit_readers)
}

# tokenkit openpgp SUB [pin|set WHAT] READER ...: its own subcommands,
# algorithms and options (more than its usage line names).
_tokenkit_openpgp() {
	local cur=$1 prev=$2 cmdi=$3 i npos=0 rpos=1 sub=${COMP_WORDS[$3 + 1]}
	for ((i = cmdi + 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--algorithm | -o | --output | --*-fd | --insecure-* | --self-sign | --csr | --import | \
			--days) ((i++)) ;;
		-*) ;;
		*) ((npos++)) ;;
		esac
	done
	case $prev in
	--algorithm)
		mapfile -t COMPREPLY < <(compgen -W "rsa2048 rsa3072 rsa4096 nistp256 nistp384 ed25519
			cv25519" -- "$cur")
		return
		;;
	--self-sign | --csr | --days) return ;;
	-o | --output | --import)
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return
		;;
	--*-fd | --insecure-*) return ;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "--json --algorithm -o --yes --reset-code --self-sign
			--csr --import --days --pin-fd
			--new-pin-fd --admin-pin-fd --new-admin-pin-fd --reset-code-fd --new-reset-code-fd
			--insecure-pin --insecure-new-pin --insecure-admin-pin --insecure-new-admin-pin
			--insecure-reset-code --insecure-new-reset-code --passphrase-fd
			--insecure-passphrase" -- "$cur")
		return
	fi
	[[ $sub == pin || $sub == set ]] && rpos=2
	if ((npos == 0)); then
		mapfile -t COMPREPLY < <(compgen -W "status generate import certificate pin set reset" -- "$cur")
	elif ((npos == 1 && rpos == 2)); then
		[[ $sub == pin ]] &&
			mapfile -t COMPREPLY < <(compgen -W "change unblock admin-change reset-code" -- "$cur") ||
			mapfile -t COMPREPLY < <(compgen -W "name url login lang" -- "$cur")
	elif ((npos == rpos)); then
		_tokenkit_complete_readers "$cur"
	elif ((npos == 2)) && [[ $sub == generate || $sub == import || $sub == certificate ]]; then
		mapfile -t COMPREPLY < <(compgen -W "sig dec aut" -- "$cur")
	elif ((npos == 3)) && [[ $sub == import ]]; then
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
	fi
}

_tokenkit() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local _tokenkit_cmd=${COMP_WORDS[0]} i cmd="" cmdi=0 npos=0 help line opts
	COMPREPLY=()

	# the command: the first word that is neither an option nor --log's level
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--log) ((i++)) ;;
		-*) ;;
		*)
			cmd=${COMP_WORDS[i]}
			cmdi=$i
			break
			;;
		esac
	done
	if [[ $prev == --log && ( -z $cmd || $cmd == diag ) ]]; then
		if [[ -z $cmd ]]; then
			mapfile -t COMPREPLY < <(compgen -W "error warn info debug trace" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		fi
		return
	fi
	help=$(_tokenkit_help)
	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "--version --help --log" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$(awk '/^commands:/ {on = 1; next}
				on && /^$/ {exit} on {print $1}' <<<"$help")" -- "$cur")
		fi
		return
	fi
	if [[ $cmd == openpgp ]]; then
		_tokenkit_openpgp "$cur" "$prev" "$cmdi"
		return
	fi
	# positional arguments of the command typed so far
	for ((i = cmdi + 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--root | --log | --last | --store | --algorithm | --new-algorithm | -o | --output | \
			--self-sign | --csr | --import | --days | --*-fd | --insecure-* | --pin-policy | \
			--touch-policy | --program | --token) ((i++)) ;;
		-*) ;;
		*) ((npos++)) ;;
		esac
	done
	case $prev in
	--root | --store | --program)
		[[ $prev == --store ]] && mapfile -t COMPREPLY < <(compgen -d -- "$cur") ||
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return
		;;
	--last | --self-sign | --csr | --days | --*-fd | --insecure-* | --token) return ;;
	--algorithm)
		mapfile -t COMPREPLY < <(compgen -W "rsa1024 rsa2048 rsa3072 rsa4096 eccp256 eccp384" -- "$cur")
		return
		;;
	--pin-policy)
		mapfile -t COMPREPLY < <(compgen -W "never once always" -- "$cur")
		return
		;;
	--touch-policy)
		mapfile -t COMPREPLY < <(compgen -W "never always cached" -- "$cur")
		return
		;;
	--new-algorithm)
		mapfile -t COMPREPLY < <(compgen -W "3des aes128 aes192 aes256" -- "$cur")
		return
		;;
	--import | -o | --output)
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		return
		;;
	esac
	if [[ $cur == -* && $cmd == piv ]]; then
		# piv's options are too many for its usage line: listed here
		mapfile -t COMPREPLY < <(compgen -W "--algorithm -o --self-sign --import --days
			--new-algorithm --mgmt-key-fd --default-mgmt-key --new-mgmt-key-fd --pin-fd
			--new-pin-fd --puk-fd --new-puk-fd --insecure-mgmt-key --insecure-new-mgmt-key
			--insecure-pin --insecure-new-pin --insecure-puk --insecure-new-puk --pad
			--pin-policy --touch-policy --passphrase-fd --insecure-passphrase
			--no-certificate --csr --yes --block --json" -- "$cur")
		return
	fi
	if [[ $cur == -* ]]; then
		line=$(awk -v c="$cmd" '/^commands:/ {on = 1; next} on && $1 == c {print; exit}' <<<"$help")
		opts=$(grep -oE -- '--[a-z][a-z-]*' <<<"$line" | sort -u)
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
		return
	fi
	case $cmd in
	apdu | diag | objects | reset)
		((npos == 0)) && _tokenkit_complete_readers "$cur"
		;;
	attest)
		if ((npos == 0)); then
			_tokenkit_complete_readers "$cur"
		elif ((npos == 1)); then
			mapfile -t COMPREPLY < <(compgen -W "9a 9c 9d 9e $(printf '%x ' {130..149})" -- "$cur")
		fi
		;;
	piv)
		local sub=${COMP_WORDS[cmdi + 1]} rpos=1
		[[ $sub == pin || $sub == puk ]] && rpos=2
		if ((npos == 0)); then
			mapfile -t COMPREPLY < <(compgen -W "generate import certificate pin puk set-mgmt-key reset" -- "$cur")
		elif ((npos == 1 && rpos == 2)); then
			[[ $sub == pin ]] && mapfile -t COMPREPLY < <(compgen -W "change unblock" -- "$cur") ||
				mapfile -t COMPREPLY < <(compgen -W "change" -- "$cur")
		elif ((npos == rpos)); then
			_tokenkit_complete_readers "$cur"
		elif ((npos == 2)) && [[ $sub == generate || $sub == certificate || $sub == import ]]; then
			mapfile -t COMPREPLY < <(compgen -W "9a 9c 9d 9e $(printf '%x ' {130..149})" -- "$cur")
		elif ((npos == 3)) && [[ $sub == import ]]; then
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		fi
		;;
	registry)
		((npos == 0)) && mapfile -t COMPREPLY < <(compgen -W "list show remove watch" -- "$cur")
		;;
	consent)
		((npos == 0)) && mapfile -t COMPREPLY < <(compgen -W "list reset" -- "$cur")
		;;
	esac
}
complete -F _tokenkit tokenkit
