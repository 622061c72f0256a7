#!/usr/bin/env bash
# clang-format over the C++ of src/ and tests/ with the repository's .clang-format (STYLE.md).
# The reference is the clang-format of Debian 12 (version 14), which tools/setup.sh installs;
# other versions may format a few constructs differently.
#   tools/format.sh           # format every file in place
#   tools/format.sh --check   # change nothing; list each file that is not formatted, exit 1 if any
set -euo pipefail
cd "$(dirname "$0")/.."

clang_format=${CLANG_FORMAT:-clang-format}
if ! command -v "$clang_format" >/dev/null; then
  echo "format: $clang_format not found. Install it with: apt-get install clang-format" \
       "(or run tools/setup.sh)" >&2
  exit 2
fi

mapfile -d '' files < <(find src tests -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' \
  -o -name '*.cuh' \) -print0 | sort -z)
if ((${#files[@]} == 0)); then
  echo "format: no C++ files found" >&2
  exit 2
fi

case "${1:-}" in
  --check)
    if "$clang_format" --dry-run -Werror "${files[@]}"; then
      echo "format: ${#files[@]} files formatted"
    else
      echo "format: files above are not formatted; run tools/format.sh to fix them" >&2
      exit 1
    fi
    ;;
  "")
    "$clang_format" -i "${files[@]}"
    ;;
  *)
    echo "usage: tools/format.sh [--check]" >&2
    exit 2
    ;;
esac
