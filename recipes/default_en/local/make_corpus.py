#!/usr/bin/env python3
"""Build an English sentence corpus from offline text on this machine.

Sources: fortune files (/usr/share/games/fortunes), WordNet gloss examples
(/usr/share/wordnet, Debian `wordnet-base`), the Python HTML docs (Debian
`python3-doc`), and generated text: digit strings, numbers, short commands and
sentences in the style of children's / ESL read speech. Missing sources are
skipped with a note.

Sentences are normalised with asr.model.tokenizer.normalize_text, kept at 2-20 words,
deduplicated, and dropped when they look odd (urls, code, abbreviations, more
than one word outside /usr/share/dict/words).

train.txt is ordered by a weighted random interleave of the sources, so any
prefix of it (synthesize.py reads the first NUM_SYNTH lines) has the mixture in
WEIGHTS; test.txt is drawn the same way and never shares a sentence with train.
Sentences of --exclude transcripts (real evaluation sets) are left out of both.

Writes OUT/train.txt, OUT/test.txt and OUT/lm_train.txt (all train sentences).
"""

from __future__ import annotations

import argparse
import csv
import html.parser
import random
import re
import sys
from pathlib import Path

from asr.model.tokenizer import normalize_text, number_to_words

FORTUNES = Path("/usr/share/games/fortunes")
WORDNET = Path("/usr/share/wordnet")
PYDOC = Path("/usr/share/doc/python3-doc/html")
DICT = Path("/usr/share/dict/words")

# Share of each source in any prefix of train.txt (and in test.txt).
WEIGHTS = {
    "wordnet": 0.25,
    "fortunes": 0.20,
    "kids": 0.20,
    "commands": 0.10,
    "digits": 0.10,
    "numbers": 0.05,
    "pydoc": 0.10,
}
SKIP_FORTUNES = {"ascii-art", "art", "perl", "debian", "linux", "knghtbrd", "translate-me"}
ODD = re.compile(r"https?:|www\.|\.com\b|\.org\b|@|[{}<>=_\\/|#$^~\[\]*+]|\.\.\.\w|\w\.\w|\s--\S")
ABBREV = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "jr",
    "sr",
    "vs",
    "etc",
    "ie",
    "eg",
    "ii",
    "iii",
    "iv",
    "vi",
    "vii",
    "viii",
    "ix",
    "xi",
    "xii",
    "pp",
    "ps",
    "ok",
    "tv",
    "usa",
    "uk",
    "bc",
    "pm",
}
SENT_SPLIT = re.compile(r"(?<=[.!?;])[\"')\]]*\s+")


def sentences(text: str):
    """Raw text block -> candidate sentences."""
    text = " ".join(text.split())
    return (s for s in SENT_SPLIT.split(text) if s)


def fortune_text():
    if not FORTUNES.is_dir():
        print(f"note: no {FORTUNES}, skipping fortunes", file=sys.stderr)
        return
    for path in sorted(FORTUNES.iterdir()):
        if path.suffix or path.name in SKIP_FORTUNES or not path.is_file():
            continue
        for entry in path.read_text(errors="replace").split("\n%\n"):
            lines = [ln for ln in entry.splitlines() if not ln.strip().startswith(("--", "-- "))]
            if any(ln.startswith(("\t", "    ")) for ln in lines[1:]) and len(lines) > 6:
                continue  # verse / ascii layout
            yield from sentences(" ".join(lines))


def wordnet_text():
    files = sorted(WORDNET.glob("data.*"))
    if not files:
        print(f"note: no {WORDNET}/data.*, skipping wordnet", file=sys.stderr)
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            if "|" in line and not line.startswith("  "):
                yield from re.findall(r'"([^"]+)"', line.split("|", 1)[1])


class _Paragraphs(html.parser.HTMLParser):
    """Collects the text of <p> elements; inline code becomes a marker."""

    def __init__(self):
        super().__init__()
        self.paragraphs, self.buf, self.inside = [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "p":
            self.inside, self.buf = True, []
        elif tag in ("code", "pre", "kbd", "samp", "var") or ("class", "pre") in attrs:
            self.buf.append(" \x00 ")  # sentences holding code are dropped

    def handle_endtag(self, tag):
        if tag == "p" and self.inside:
            self.paragraphs.append("".join(self.buf))
            self.inside = False

    def handle_data(self, data):
        if self.inside:
            self.buf.append(data)


def pydoc_text():
    if not PYDOC.is_dir():
        print(f"note: no {PYDOC}, skipping python docs", file=sys.stderr)
        return
    for sub in ("tutorial", "faq", "howto", "library", "reference", "glossary.html"):
        for path in sorted((PYDOC / sub).rglob("*.html")) if (PYDOC / sub).is_dir() else [PYDOC / sub]:
            parser = _Paragraphs()
            parser.feed(path.read_text(errors="replace"))
            for para in parser.paragraphs:
                yield from (s for s in sentences(para) if "\x00" not in s)


# --- generated text ---------------------------------------------------------

DIGITS = "zero one two three four five six seven eight nine".split()
NAMES = "tom anna max lily sam emma ben lucy jack mia leo grace peter mary john kate david sarah".split()
RELATIVES = "mother father sister brother grandma grandpa aunt uncle friend teacher mom dad".split()
NOUNS = [
    tuple(pair.split(":"))
    for pair in (
        "cat:cats dog:dogs bird:birds ball:balls book:books apple:apples banana:bananas car:cars tree:trees "
        "house:houses bear:bears duck:ducks fish:fish horse:horses cake:cakes chair:chairs table:tables "
        "cup:cups hat:hats shoe:shoes flower:flowers box:boxes egg:eggs pencil:pencils kite:kites boat:boats "
        "train:trains rabbit:rabbits monkey:monkeys bag:bags door:doors window:windows orange:oranges "
        "cookie:cookies toy:toys sheep:sheep child:children mouse:mice bus:buses star:stars"
    ).split()
]
ADJS = (
    "red blue green yellow big small little old new happy hungry funny tall short soft warm cold "
    "pretty brown white black clean"
).split()
PLACES = (
    "on the table|in the box|under the bed|in the garden|at school|in the park|near the door|at home|"
    "in the kitchen|by the river|on the bus|in the sky"
).split("|")
VERBS = [tuple(p.split(":")) for p in "see:sees like:likes want:wants have:has eat:eats draw:draws".split()]
VERBS += [tuple(p.split(":")) for p in "find:finds need:needs love:loves buy:buys".split()]
ACTIONS = (
    "play football|read a book|go to school|swim in the sea|ride my bike|sing a song|eat ice cream|"
    "help my mother|watch the birds|fly a kite|clean my room|go to bed early"
).split("|")
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
ROOMS = "kitchen bedroom living room bathroom office garage hallway garden".split()
DEVICES = "lights lamp fan heater radio television music alarm".split()


def an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def kids_sentence(r: random.Random) -> str:
    n, ns = r.choice(NOUNS)
    adj, rel, name = r.choice(ADJS), r.choice(RELATIVES), r.choice(NAMES)
    verb, verbs = r.choice(VERBS)
    count = r.randint(2, 12)
    return r.choice(
        [
            f"we call it {n}",
            f"this is my {n}",
            f"i {verb} the {adj} {n}",
            f"my {rel} {verbs} {an(adj)} {n}",
            f"{name} {verbs} {number_to_words(count)} {ns}",
            f"the {n} is {r.choice(PLACES)}",
            f"where is the {adj} {n}",
            f"look at the {adj} {n}",
            f"can you see the {n} {r.choice(PLACES)}",
            f"i like to {r.choice(ACTIONS)}",
            f"on {r.choice(DAYS)} we {r.choice(ACTIONS).replace('my', 'our')}",
            f"the {ns} are {adj}",
            f"there are {number_to_words(count)} {ns} {r.choice(PLACES)}",
            f"{name} and {r.choice(NAMES)} {r.choice(ACTIONS).replace('my', 'their')}",
            f"it is {an(adj)} {n}",
            f"i have {an(adj)} {n} and {an(r.choice(ADJS))} {r.choice(NOUNS)[0]}",
            f"my {rel} can {r.choice(ACTIONS).replace('my', 'his')}",
            f"do you {verb} {ns}",
            f"the {adj} {n} is mine",
            f"please give me the {n}",
            f"i am {number_to_words(r.randint(4, 12))} years old",
        ]
    )


def command_sentence(r: random.Random) -> str:
    num = number_to_words(r.randint(1, 60))
    return r.choice(
        [
            f"turn {r.choice(['on', 'off'])} the {r.choice(ROOMS)} {r.choice(DEVICES)}",
            f"set a timer for {num} {r.choice(['seconds', 'minutes', 'hours'])}",
            f"set an alarm for {number_to_words(r.randint(1, 12))} {r.choice(['in the morning', 'at night', 'o clock', 'thirty'])}",
            f"call {r.choice(NAMES)}",
            f"send a message to {r.choice(NAMES)}",
            f"play some {r.choice(['jazz', 'rock', 'classical', 'quiet', 'happy', 'pop'])} music",
            f"what is the weather {r.choice(['today', 'tomorrow', 'like on ' + r.choice(DAYS)])}",
            f"{r.choice(['move', 'go', 'turn'])} {r.choice(['left', 'right', 'forward', 'back', 'up', 'down'])}",
            f"volume {r.choice(['up', 'down'])}",
            r.choice(
                [
                    "next song",
                    "stop the music",
                    "what time is it",
                    "cancel that",
                    "go back",
                    "open the door",
                    "yes please",
                    "no thank you",
                    "start recording",
                    "stop recording",
                ]
            ),
            f"go to page {num}",
            f"open the {r.choice(['calendar', 'camera', 'browser', 'settings', 'map'])}",
            f"remind me to call my {r.choice(RELATIVES)} on {r.choice(DAYS)}",
            f"{r.choice(['increase', 'decrease'])} the temperature by {number_to_words(r.randint(1, 9))} degrees",
        ]
    )


def digits_sentence(r: random.Random) -> str:
    return " ".join(r.choice(DIGITS) for _ in range(r.randint(2, 10)))


def number_sentence(r: random.Random) -> str:
    n = r.choice([r.randint(0, 100), r.randint(100, 10000), r.randint(10000, 10**7)])
    year = f"{number_to_words(r.randint(11, 20))} {number_to_words(r.randint(10, 99))}"
    return r.choice(
        [
            number_to_words(n) + " " + r.choice(["dollars", "people", "miles", "points", "percent", "times"]),
            f"the number is {number_to_words(n)}",
            f"it costs {number_to_words(n % 1000)} dollars",
            f"in {year}",
            f"the year was {year}",
            f"room {number_to_words(r.randint(100, 999))}",
            f"chapter {number_to_words(r.randint(1, 40))}",
            f"page {number_to_words(r.randint(1, 500))}",
            f"call me at {digits_sentence(r)}",
            f"my code is {digits_sentence(r)}",
            number_to_words(n),
        ]
    )


def generated(fn, n: int, seed: int):
    r = random.Random(seed)
    return (fn(r) for _ in range(n * 3))  # more than n: duplicates get dropped


# --- cleaning and mixing ----------------------------------------------------


def load_dictionary() -> set[str]:
    if not DICT.exists():
        print(f"note: no {DICT}, not checking words", file=sys.stderr)
        return set()
    return {w.lower() for w in DICT.read_text(errors="replace").split()}


def clean(raw: str, vocab: set[str]) -> str | None:
    if ODD.search(raw) or sum(c.isdigit() for c in raw) > 8:
        return None
    text = normalize_text(raw)
    words = text.split()
    if not 2 <= len(words) <= 20:
        return None
    if any(w in ABBREV or (len(w) == 1 and w not in "ai") for w in words):
        return None
    if vocab and sum(w not in vocab and w.replace("'s", "") not in vocab for w in words) > (len(words) >= 5):
        return None
    return text


def interleave(pools: dict[str, list[str]], r: random.Random):
    """Weighted random interleave of shuffled pools until all are empty."""
    for pool in pools.values():
        r.shuffle(pool)
    while pools:
        names = list(pools)
        name = r.choices(names, weights=[WEIGHTS[n] for n in names])[0]
        yield pools[name].pop()
        if not pools[name]:
            del pools[name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="output folder (WORK/text)")
    ap.add_argument("--num-test", type=int, default=200)
    ap.add_argument("--max-pydoc", type=int, default=8000, help="cap on Python-doc sentences")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument(
        "--exclude",
        type=Path,
        nargs="*",
        default=[],
        help="transcripts.tsv files (column 'reference') whose sentences must not be used",
    )
    args = ap.parse_args()

    vocab = load_dictionary()
    seen: set[str] = set()
    for path in args.exclude:
        with open(path, newline="") as f:
            seen.update(normalize_text(row["reference"]) for row in csv.DictReader(f, delimiter="\t"))
    print(f"excluding {len(seen)} sentences of {len(args.exclude)} evaluation/real sets")
    raw = {
        "fortunes": fortune_text(),
        "wordnet": wordnet_text(),
        "pydoc": pydoc_text(),
        "kids": generated(kids_sentence, 8000, args.seed),
        "commands": generated(command_sentence, 3000, args.seed),
        "digits": generated(digits_sentence, 3000, args.seed),
        "numbers": generated(number_sentence, 2000, args.seed),
    }
    pools: dict[str, list[str]] = {}
    caps = {"kids": 8000, "commands": 3000, "digits": 3000, "numbers": 2000}
    for name, texts in raw.items():
        pool = pools.setdefault(name, [])
        for t in texts:
            t = clean(t, vocab)
            if t and t not in seen and len(pool) < caps.get(name, 10**9):
                seen.add(t)
                pool.append(t)
        print(f"{name:>9}: {len(pool)} sentences")
    r = random.Random(args.seed)
    pydoc = pools.get("pydoc", [])
    r.shuffle(pydoc)
    del pydoc[args.max_pydoc :]
    pools = {k: v for k, v in pools.items() if v}
    if not pools:
        sys.exit("error: no text found")
    order = list(interleave(pools, r))
    test, train = order[: args.num_test], order[args.num_test :]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "test.txt").write_text("\n".join(test) + "\n")
    (args.out / "train.txt").write_text("\n".join(train) + "\n")
    (args.out / "lm_train.txt").write_text("\n".join(train) + "\n")
    words = sum(len(t.split()) for t in train)
    print(f"train: {len(train)} sentences ({words} words), test: {len(test)} sentences -> {args.out}")


if __name__ == "__main__":
    main()
