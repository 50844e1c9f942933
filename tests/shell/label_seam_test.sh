#!/usr/bin/env bash
# Structural check: outside src/platform/ and src/job/ (the platform seam and the domain
# types), no Rust code decides anything by the job's label. Everything that differs
# between openEO and OGC API Processes belongs behind `platform::Platform`.
#
# Flagged in non-test code (a file's `#[cfg(test)]` module and `tests.rs` files are
# skipped):
#   - the label's variants, `Label::Openeo` / `Label::OgcApiProcess` (a match arm, a
#     comparison, `matches!`, `if let`: any use outside the seam is a decision by label);
#   - comparisons with, and match arms on, the wire names "openeo" / "ogc_api_process".
#
# Usage: tests/shell/label_seam_test.sh [SRC_DIR]   (default: src). Before checking SRC_DIR
# it checks itself on a throw-away tree with a planted violation, so that it cannot pass
# by finding nothing at all.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# Prints "file:line: text" for every decision by label under $1.
violations() {
	local src=$1 file
	while IFS= read -r -d '' file; do
		case $file in
		"$src"/platform/* | "$src"/job/* | "$src"/job.rs | */tests.rs) continue ;;
		esac
		awk -v f="$file" '
			/^[[:space:]]*#\[cfg\(test\)\]/ { exit }
			/^[[:space:]]*\/\// { next }
			/Label::(Openeo|OgcApiProcess)/ ||
			/(==|!=)[[:space:]]*"(openeo|ogc_api_process)"/ ||
			/"(openeo|ogc_api_process)"[[:space:]]*(==|!=|=>|\|)/ {
				print f ":" NR ": " $0
			}
		' "$file"
	done < <(find "$src" -name '*.rs' -print0 | sort -z)
}

# Self-test: a planted match on the label must be found, and the seam itself is exempt.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/label-seam.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/api" "$tmp/src/platform"
cat >"$tmp/src/api/bad.rs" <<'EOF'
fn pick(job: &Job) -> u32 {
    match job.label {
        Label::Openeo => 1,
        _ => 2,
    }
}
fn by_name(label: &str) -> bool {
    label == "ogc_api_process"
}
#[cfg(test)]
mod tests {
    fn fine() { let _ = Label::Openeo; }
}
EOF
cat >"$tmp/src/platform/mod.rs" <<'EOF'
fn connect(label: Label) { match label { Label::Openeo => {}, Label::OgcApiProcess => {} } }
EOF
planted=$(violations "$tmp/src")
if [[ $(printf '%s\n' "$planted" | grep -c .) -ne 2 ]] ||
	! grep -q 'bad.rs:3:' <<<"$planted" || ! grep -q 'bad.rs:8:' <<<"$planted"; then
	printf 'label seam check: the self-test did not find exactly the 2 planted decisions:\n%s\n' "$planted" >&2
	exit 1
fi

found=$(violations "${1:-src}")
if [[ -n $found ]]; then
	printf 'Decisions by label outside src/platform/ and src/job/ (put them behind platform::Platform):\n%s\n' "$found" >&2
	exit 1
fi
echo "label seam: no decision by label outside src/platform/ and src/job/"
