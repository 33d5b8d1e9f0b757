"""The merchant knowledge base that ships with the package (data/merchants.json), indexed.

Aliases are matched as whole words on `clean_text`, longest first, so "tesco pfs" (fuel) beats
"tesco" (groceries) and "uber eats" beats "uber". A single long word may also match as a prefix
("tescostores", "steamgames") because card descriptors often run words together.

The brand table (brands.json, built by brand_table.py from OpenStreetMap's name-suggestion-index)
is asked apart (`match_brand`), after the hand-written files: chains in every country, matched
as whole words at the start of the payee's words only, and the kind-of-business words learnt
from their names (`kind_of`). Two hand-written files:
merchants.json (UK merchants, keyword rules) and vocabulary.json (chains met abroad and
online, merchant-type words such as "motel", "dental", "gas station", processor prefixes). The
vocabulary generalises beyond named merchants: most of a user's unknown payees still carry a word
that says what kind of business they are.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bank_pipeline.enrich.normalise import clean_text

KB_PATH = Path(__file__).with_name("data") / "merchants.json"
VOCABULARY_PATH = Path(__file__).with_name("data") / "vocabulary.json"
BRANDS_PATH = Path(__file__).with_name("data") / "brands.json"
_MAX_ALIAS_WORDS = 6
_PREFIX_MIN_CHARS = 5


@dataclass(frozen=True)
class Merchant:
    name: str
    category: str
    subcategory: str | None
    merchant_type: str | None
    wrapper: bool = False  # a payment processor (PayPal, SumUp): the real merchant may follow
    keep_name: bool = True  # False: do not report the processor as the merchant
    credit_category: tuple[str, str | None] | None = None


@dataclass(frozen=True)
class MerchantMatch:
    merchant: Merchant
    start: int  # word index in the cleaned text
    words: int
    exact: bool

    def rank(self) -> tuple:
        return (not self.merchant.wrapper, self.exact, self.words, -self.start)


@dataclass(frozen=True)
class KindWord:
    """A word that names a kind of business in the brand table's names ("pizza", "farmacia")."""

    category: str
    subcategory: str | None
    merchant_type: str | None
    share: float  # of the brands whose names hold the word, the share in this category
    brands: int


@dataclass(frozen=True)
class KeywordRule:
    pattern: re.Pattern[str]
    category: str
    subcategory: str | None
    direction: str | None
    methods: frozenset[str] | None = None  # only for these payment methods ("gas" on a card is fuel)


class KnowledgeBase:
    def __init__(self, data: dict, digest: str, vocabulary: dict | None = None, brands: dict | None = None):
        self.digest = digest
        self._aliases: dict[tuple[str, ...], Merchant] = {}
        self._prefix_aliases: list[tuple[str, Merchant]] = []
        self._brands: dict[tuple[str, ...], Merchant] = {}
        self.kind_words: dict[str, KindWord] = {}
        vocabulary = vocabulary or {}
        self._add_merchants(data["merchants"], _PREFIX_MIN_CHARS)
        self._add_merchants(
            vocabulary.get("merchants", []), vocabulary.get("prefix_min_chars", _PREFIX_MIN_CHARS)
        )
        self._add_brands(brands or {})
        self._prefix_aliases.sort(key=lambda item: -len(item[0]))
        # Indexed by their first letters (every prefix alias has at least that many), longest
        # first within each: a word is compared with the few aliases that could start it.
        self._prefix_key = min((len(a) for a, _ in self._prefix_aliases), default=1)
        self._prefix_index: dict[str, list[tuple[str, Merchant]]] = {}
        for alias, merchant in self._prefix_aliases:
            self._prefix_index.setdefault(alias[: self._prefix_key], []).append((alias, merchant))
        rules = self._rule
        self.keywords_first = [
            rules(r)
            for r in vocabulary.get("keywords_before", [])
            + data.get("keywords_first", [])
            + vocabulary.get("keywords_first", [])
        ]
        self.keywords_after = [
            rules(r)
            for r in vocabulary.get("keywords_specific", [])
            + data.get("keywords_after", [])
            + vocabulary.get("keywords_generic", [])
        ]
        self.classifications = {
            k.casefold(): tuple(v)
            for k, v in {**vocabulary.get("classifications", {}), **data.get("classifications", {})}.items()
        }
        self.processor_prefixes = tuple(vocabulary.get("processor_prefixes", ()))
        self.noise_words = frozenset(vocabulary.get("noise_words", ()))

    def _add_merchants(self, merchants: list[dict], prefix_min: int) -> None:
        for raw in merchants:
            credit = raw.get("credit")
            merchant = Merchant(
                name=raw["name"],
                category=raw["category"],
                subcategory=raw.get("subcategory"),
                merchant_type=raw.get("type"),
                wrapper=bool(raw.get("wrapper", False)),
                keep_name=bool(raw.get("keep_name", True)),
                credit_category=(credit["category"], credit.get("subcategory")) if credit else None,
            )
            for alias in raw.get("aliases") or [raw["name"]]:
                words = tuple(clean_text(alias).split())
                if not words or len(words) > _MAX_ALIAS_WORDS:
                    continue
                if words in self._aliases:
                    continue  # the first file wins: UK names keep their UK meaning
                self._aliases[words] = merchant
                if len(words) == 1 and len(words[0]) >= prefix_min:
                    self._prefix_aliases.append((words[0], merchant))

    def _add_brands(self, brands: dict) -> None:
        """The brand table: whole-word matches only (no prefixes: tens of thousands of names)."""
        for word, (key, share, count) in brands.get("words", {}).items():
            category, sub, mtype = key.split("|")
            self.kind_words[word] = KindWord(category, sub or None, mtype or None, float(share), int(count))
        for key, entries in brands.get("groups", {}).items():
            category, sub, mtype = key.split("|")
            for name, *aliases in entries:
                merchant = Merchant(name, category, sub or None, mtype or None)
                for alias in aliases:
                    words = tuple(alias.split())
                    if words and len(words) <= _MAX_ALIAS_WORDS and words not in self._aliases:
                        self._brands.setdefault(words, merchant)

    @staticmethod
    def _rule(raw: dict) -> KeywordRule:
        methods = raw.get("methods")
        return KeywordRule(
            re.compile(raw["pattern"]),
            raw["category"],
            raw.get("subcategory"),
            raw.get("direction"),
            frozenset(methods) if methods else None,
        )

    def __len__(self) -> int:
        return len({id(m) for m in self._aliases.values()} | {id(m) for m in self._brands.values()})

    def match_merchant(self, cleaned: str) -> MerchantMatch | None:
        """The best merchant named in already-cleaned text (see module docstring)."""
        words = cleaned.split()
        best: MerchantMatch | None = None
        for start in range(len(words)):
            for size in range(min(_MAX_ALIAS_WORDS, len(words) - start), 0, -1):
                merchant = self._aliases.get(tuple(words[start : start + size]))
                if merchant:
                    found = MerchantMatch(merchant, start, size, True)
                    if best is None or found.rank() > best.rank():
                        best = found
                    break
            else:
                word = words[start]
                for alias, merchant in self._prefix_index.get(word[: self._prefix_key], ()):
                    if word.startswith(alias) and len(word) > len(alias):
                        found = MerchantMatch(merchant, start, 1, False)
                        if best is None or found.rank() > best.rank():
                            best = found
                        break
        return best

    def match_brand(self, payee: list[str]) -> MerchantMatch | None:
        """The longest brand-table name the payee's words start with: a chain's name leads its
        card descriptor, and a brand word further on is often a town or a person. A leading "the"
        stays: "THE RED LION" is a pub, not the Red Lion hotel chain ("THE HOME DEPOT" is listed
        with its "the")."""
        for size in range(min(_MAX_ALIAS_WORDS, len(payee)), 0, -1):
            merchant = self._brands.get(tuple(payee[:size]))
            if merchant:
                return MerchantMatch(merchant, 0, size, True)
        return None

    def kind_of(self, words: list[str]) -> KindWord | None:
        """The surest kind-of-business word among `words` (by share, then by how many brands)."""
        found = [self.kind_words[w] for w in words if w in self.kind_words]
        return max(found, key=lambda k: (k.share, k.brands), default=None)

    def keyword(
        self, rules: list[KeywordRule], cleaned: str, direction: str, method: str | None = None
    ) -> KeywordRule | None:
        for rule in rules:
            if rule.direction not in (None, direction):
                continue
            if rule.methods is not None and method not in rule.methods:
                continue
            if rule.pattern.search(cleaned):
                return rule
        return None

    def classification(self, classification: tuple[str, ...]) -> tuple[str, str | None] | None:
        """TrueLayer's [top, sub] classification mapped to ours: the most specific known part."""
        for part in reversed(classification or ()):
            found = self.classifications.get(str(part).casefold())
            if found:
                return found[0], found[1] if len(found) > 1 else None
        return None


@lru_cache(maxsize=4)
def load_knowledge_base(
    path: str | None = None, vocabulary: str | None = None, brands: str | None = None
) -> KnowledgeBase:
    """The shipped knowledge base (or `path`) with the vocabulary and the brand table; the digest
    covers all three files."""
    raw = Path(path or KB_PATH).read_bytes()
    vocab_raw = Path(vocabulary or VOCABULARY_PATH).read_bytes()
    brands_raw = Path(brands or BRANDS_PATH).read_bytes()
    digest = hashlib.sha256(raw + b"\0" + vocab_raw + b"\0" + brands_raw).hexdigest()[:10]
    return KnowledgeBase(json.loads(raw), digest, json.loads(vocab_raw), json.loads(brands_raw))
