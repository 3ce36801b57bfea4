#!/usr/bin/env bash
# Fuzzing by hand, and how far each target reaches into its parser.
#
#   bench/fuzz.sh run [SECONDS] [TARGET...]
#       In build-fuzz/ (CC=clang-14 cmake -B build-fuzz -DTK_FUZZ=ON
#       -DTK_SANITIZE=ON; built here if missing) run each target (default:
#       all) for SECONDS (default 100) from a copy of its corpus, then merge
#       (-merge=1) the inputs that add coverage into tests/fuzz/corpus/NAME.
#       Prints runs, coverage edges and the corpus size before -> after; a
#       crash is kept in $FUZZ_OUT (printed) and the script goes on.
#   bench/fuzz.sh coverage [TARGET...]
#       In build-cov/ (clang-14 with -fprofile-instr-generate
#       -fcoverage-mapping; configured and built here) replay each corpus and
#       print the line coverage of the target's parser (llvm-cov-14): the
#       functions that parse, or the whole file where the file is the parser.
#
# It prints figures and never fails on them.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=$SRC/tests/fuzz/corpus
JOBS=$(nproc 2>/dev/null || echo 2)

# The parser each target is there for: FILE (all of it) or FILE:FN,FN...
# (those functions; static ones included).
declare -A PARSER=(
	[apdu]="core/apdu.c"
	[atr]="core/atr.c"
	[cache]="core/cache.c:tk_cache_decode,tk_cache_encode,tk_cache_put,find"
	[fault_spec]="tools/vcard/fault.c"
	[hex]="core/hex.c"
	[p11_codec]="pkcs11/codec.c:tk_p11_pkcs1_type2_decode,tk_p11_oaep_decode,ct_eq,ct_is_zero,ct_sel,ct_lt pkcs11/util.c:tk_p11_der_unwrap_octet_string,tk_p11_der_octet_string"
	[p11_cert]="pkcs11/object.c:tk_p11_object_build,build_cert,build_key,add_common,add_public_parts,add_bn,add_i2d,add_curve_oid,curve_nid_of,date_of,spki_for,subject_for"
	[p11_ecdh]="pkcs11/derive.c:tk_p11_ecdh_peer_point pkcs11/util.c:tk_p11_der_unwrap_octet_string"
	[piv_objects]="drivers/piv/piv.c drivers/piv/piv_cert.c"
	[registry]="core/registry_rec.c:tk_reg_decode,tk_reg_encode,unframe,load_cbor,parse_rec,parse_item,get_text,get_bytes,get_uint,key_index,label_ok,item_ok,tk_reg_store_id_decode,tk_reg_store_id_encode"
	[recovery_log]="core/recovery_log.c:tk_recovery_log_parse_line,tk_recovery_log_format,tk_recovery_step_from_name,put,put_str,eat,get_str,hexval,parse_steps,parse_step,get_int,clamp_int,skip_value,skip_container,lit,ws"
	[tlv]="core/tlv.c"
	[vcard_apdu]="tools/vcard/card.c tools/vcard/piv_data.c tools/vcard/piv_auth.c tools/vcard/piv_keys.c tools/vcard/tlv.c"
	[vcard_state]="tools/vcard/state.c"
	[vpcd_frame]="tools/vcard/vpcd_frame.c"
)

targets() {
	if (($#)); then
		printf '%s\n' "$@"
	else
		for f in "$SRC"/tests/fuzz/fuzz_*.c; do
			f=${f##*/fuzz_}
			echo "${f%.c}"
		done
	fi
}

cmd_run() {
	local secs=100 build=$SRC/build-fuzz name bin work log before after runs edges
	if [[ ${1:-} =~ ^[0-9]+$ ]]; then
		secs=$1
		shift
	fi
	if [[ ! -f $build/CMakeCache.txt ]]; then
		CC=clang-14 cmake -S "$SRC" -B "$build" -DTK_FUZZ=ON -DTK_SANITIZE=ON >/dev/null
	fi
	cmake --build "$build" -j"$JOBS" >/dev/null
	FUZZ_OUT=${FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tk-fuzz.XXXXXX")}
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
	printf '%-14s %10s %8s %16s\n' target runs edges "corpus before->after"
	for name in $(targets "$@"); do
		bin=$build/tests/fuzz_$name
		[[ -x $bin ]] || { echo "$name: $bin not built" >&2; continue; }
		work=$FUZZ_OUT/$name
		log=$FUZZ_OUT/$name.log
		mkdir -p "$work" "$CORPUS/$name"
		cp -n "$CORPUS/$name"/* "$work"/ 2>/dev/null || true
		before=$(find "$CORPUS/$name" -type f | wc -l)
		(cd "$FUZZ_OUT" && "$bin" -max_total_time="$secs" -timeout=25 -rss_limit_mb=4096 \
			-artifact_prefix="$FUZZ_OUT/$name-" "$work" >"$log" 2>&1) ||
			echo "$name: the fuzzer stopped early (crash?): $log" >&2
		"$bin" -merge=1 "$CORPUS/$name" "$work" >"$log.merge" 2>&1 || true
		after=$(find "$CORPUS/$name" -type f | wc -l)
		runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
		edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		printf '%-14s %10s %8s %9s -> %s\n' "$name" "${runs:--}" "${edges:--}" "$before" "$after"
	done
	echo "logs and crashes (if any): $FUZZ_OUT"
}

# Lines and missed lines of FILE's functions FNS (comma-separated) or of the
# whole file, from llvm-cov-14 report; prints "lines missed".
cov_of() {
	local bin=$1 prof=$2 file=$3 fns=${4:-}
	if [[ -z $fns ]]; then
		llvm-cov-14 report "$bin" -instr-profile="$prof" "$SRC/$file" 2>/dev/null |
			awk '$1 == "TOTAL" {print $8, $9}'
	else
		llvm-cov-14 report -show-functions "$bin" -instr-profile="$prof" "$SRC/$file" 2>/dev/null |
			awk -v fns="$fns" '
				BEGIN { n = split(fns, a, ","); for (i = 1; i <= n; i++) want[a[i]] = 1 }
				{ fn = $1; sub(/^.*:/, "", fn) }
				(fn in want) && $5 ~ /^[0-9]+$/ { l += $5; m += $6; seen[fn] = 1 }
				END {
					for (f in want)
						if (!(f in seen))
							print "fuzz.sh: no function " f " in the report" > "/dev/stderr"
					print l + 0, m + 0
				}'
	fi
}

cmd_coverage() {
	local build=$SRC/build-cov name bin prof spec file fns lines missed tl tm desc
	local flags="-fprofile-instr-generate -fcoverage-mapping"
	if [[ ! -f $build/CMakeCache.txt ]]; then
		CC=clang-14 cmake -S "$SRC" -B "$build" -DCMAKE_BUILD_TYPE=Debug \
			-DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
			-DCMAKE_SHARED_LINKER_FLAGS="$flags" -DCMAKE_MODULE_LINKER_FLAGS="$flags" >/dev/null
	fi
	local tlist=()
	for name in $(targets "$@"); do tlist+=("fuzz_$name"); done
	cmake --build "$build" -j"$JOBS" --target "${tlist[@]}" >/dev/null
	printf '%-13s %-58s %7s %s\n' target "parser (functions)" lines "covered"
	for name in $(targets "$@"); do
		bin=$build/tests/fuzz_$name
		prof=$build/fuzz-cov/$name.profdata
		mkdir -p "$build/fuzz-cov"
		rm -f "$build/fuzz-cov/$name".*.profraw
		LLVM_PROFILE_FILE="$build/fuzz-cov/$name.%p.profraw" "$bin" "$CORPUS/$name" >/dev/null 2>&1 || true
		llvm-profdata-14 merge -sparse "$build/fuzz-cov/$name".*.profraw -o "$prof"
		tl=0 tm=0 desc=""
		for spec in ${PARSER[$name]:-}; do
			file=${spec%%:*}
			fns=""
			[[ $spec == *:* ]] && fns=${spec#*:}
			read -r lines missed < <(cov_of "$bin" "$prof" "$file" "$fns")
			tl=$((tl + ${lines:-0}))
			tm=$((tm + ${missed:-0}))
			if [[ -n $fns ]]; then
				desc+="${file##*/}($(tr ',' ' ' <<<"$fns" | wc -w) fns) "
			else
				desc+="${file##*/} "
			fi
		done
		if ((tl > 0)); then
			printf '%-13s %-58s %7s %5.1f%% (%d/%d)\n' "$name" "$desc" "$tl" \
				"$(awk -v a=$((tl - tm)) -v b=$tl 'BEGIN{print 100*a/b}')" $((tl - tm)) "$tl"
		else
			printf '%-13s %-58s %7s %s\n' "$name" "${desc:-?}" - "no data"
		fi
	done
}

case ${1:-} in
run) shift; cmd_run "$@" ;;
coverage) shift; cmd_coverage "$@" ;;
*) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
