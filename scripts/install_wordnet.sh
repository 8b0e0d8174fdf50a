#!/usr/bin/env bash
# Makes WordNet 3.0 readable by NLTK without any download: Debian's wordnet-base package holds the database,
# wordnet-sense-index adds index.sense (NLTK's reader opens it at start-up); NLTK wants the files under
# <nltk data dir>/corpora/wordnet/ together with the standard `lexnames` file (which Debian does not ship). The English claim splitter (feedback/english_claims.py) needs it.
#   bash scripts/install_wordnet.sh [DEST]     DEST defaults to $CANDOR_VENV/nltk_data (.venv/nltk_data), a
#                                              folder NLTK searches for a Python running from that venv.
# Idempotent: a second run only re-checks.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${WORDNET_SRC:-/usr/share/wordnet}
DEST=${1:-${CANDOR_VENV:-.venv}/nltk_data}
PY=${PYTHON_FOR_CHECK:-${CANDOR_VENV:-.venv}/bin/python}
fail() { echo "[wordnet] FAILED: $*" >&2; exit 1; }

if [ ! -f "$SRC/data.noun" ] || [ ! -f "$SRC/index.sense" ]; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    || fail "$SRC lacks data.noun or index.sense; as root: apt-get install wordnet-base wordnet-sense-index"
  echo "[wordnet] installing Debian's wordnet-base and wordnet-sense-index"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null \
    || fail "apt-get install wordnet-base wordnet-sense-index"
fi

target="$DEST/corpora/wordnet"
mkdir -p "$target"
for f in data.noun data.verb data.adj data.adv index.noun index.verb index.adj index.adv noun.exc verb.exc adj.exc adv.exc index.sense cntlist.rev; do
  [ -f "$SRC/$f" ] || fail "$SRC/$f is missing from the wordnet-base installation"
  cmp -s "$SRC/$f" "$target/$f" || cp "$SRC/$f" "$target/$f"
done
# WordNet 3.0's lexicographer file numbers (lexnames(5WN)): NLTK maps each synset's lexname through it.
i=0
for name in adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body \
    noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive \
    noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation \
    noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication \
    verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception \
    verb.possession verb.social verb.stative verb.weather adj.ppl; do
  case $name in adj.*) pos=3;; adv.*) pos=4;; noun.*) pos=1;; verb.*) pos=2;; esac
  printf '%02d\t%s\t%d\n' "$i" "$name" "$pos"
  i=$((i + 1))
done > "$target/lexnames.new"
cmp -s "$target/lexnames.new" "$target/lexnames" && rm "$target/lexnames.new" || mv "$target/lexnames.new" "$target/lexnames"

if [ -x "$PY" ]; then
  NLTK_DATA="$DEST" "$PY" -c "from nltk.corpus import wordnet as wn; s = wn.synsets('dog', 'n')[0]; assert s.lexname() == 'noun.animal', s.lexname()" \
    || fail "NLTK cannot read $target"
fi
echo "[wordnet] WordNet 3.0 ready under $target"
