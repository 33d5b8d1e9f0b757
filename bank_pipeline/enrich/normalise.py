"""Descriptions → cache keys: one key for every variant of "the same" transaction text.

Banks decorate the same merchant with card numbers, dates, store numbers and references
("TESCO STORES 3297 ON 12 MAR" vs "TESCO STORES 4410 ON 02 APR"). Stripping those lets the
cache and learned rules recognise a repeat, so a model is asked about each merchant once.
"""

from __future__ import annotations

import re

_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*"
_STRIP = [
    # masked or full card numbers: 1234********5678, XXXX1234, ****1234, CARD 1234
    re.compile(r"(?:\b\d{4}[ -]?)?[x*]{4,}[ -]?\d{0,4}\b|\b(?:card|cd)\s+(?:no\.?\s*)?\d{4}\b", re.I),
    # "rate 1.00/gbp", "45.67 gbp", amounts with decimals
    re.compile(r"\brate\s+\d+(?:\.\d+)?\s*/?\s*[a-z]{3}\b|\b\d+\.\d{2}\s*(?:gbp|eur|usd)?\b", re.I),
    # dates: 12/03/2024, 2024-03-12, 12-03-24, 12.03.24
    re.compile(r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{2,4}\b"),
    # dates: "on 12 mar", "12mar24", "mar15", "12 march 2024"
    re.compile(rf"\b(?:on\s+)?\d{{1,2}}\s?{_MONTHS}(?:\s?\d{{2,4}})?\b|\b{_MONTHS}\s?\d{{1,2}}\b", re.I),
    # times 12:34(:56)
    re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\b"),
    # "mandate no 0045", "ref: 8504123" when the reference is numeric/alphanumeric with digits
    re.compile(r"\b(?:mandate\s+no|ref(?:erence)?|reference\s+no)[:.]?\s*(?=\S*\d)\S+", re.I),
]
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_HAS_DIGIT = re.compile(r"\d")
# A processor's order reference after "*" (AMAZON.CO.UK*APZLWCXBH): long, hardly any vowels.
_STAR_REF = re.compile(r"\*\s*([a-z0-9]{8,})\b", re.I)
_MONTH_WORDS = frozenset(
    "jan feb mar apr jun jul aug sep sept oct nov dec january february march april june july august"
    " september october november december".split()
)
_LEGAL = frozenset({"ltd", "limited", "plc", "llp"})
# Card descriptors end with the town and country ("PRET A MANGER BRISTOL GB"): not part of the key.
_TRAILING = frozenset(
    "gb gbr uk gbp internet online london birmingham manchester leeds liverpool glasgow edinburgh bristol"
    " sheffield newcastle nottingham leicester cardiff belfast brighton cambridge oxford york reading"
    " southampton portsmouth coventry bath exeter norwich aberdeen dundee swansea plymouth derby stoke"
    " sunderland wolverhampton bradford hull milton keynes luton watford croydon kingston richmond"
    " guildford woking slough swindon cheltenham gloucester worcester chester lancaster preston bolton"
    " stockport wigan warrington salford doncaster rotherham wakefield huddersfield harrogate middlesbrough"
    " durham carlisle inverness stirling perth newport wrexham canterbury maidstone colchester chelmsford"
    " ipswich peterborough lincoln bournemouth poole basingstoke crawley horsham eastbourne hastings"
    " islington camden hackney lambeth southwark westminster wembley stratford greenwich".split()
)
MAX_KEY_LENGTH = 480


def _star_ref(match: re.Match) -> str:
    token = match.group(1)
    vowels = sum(c in "aeiouAEIOU" for c in token)
    return " " if vowels / len(token) < 0.2 or _HAS_DIGIT.search(token) else f"*{token}"


def clean_text(text: str) -> str:
    """Casefolded words only: "&" → "and", apostrophes dropped, punctuation → spaces."""
    text = (text or "").casefold().replace("&", " and ").replace("'", "").replace("’", "")
    return " ".join(_NON_ALNUM.sub(" ", text).split())


def normalise_description(description: str) -> str:
    """The description without card numbers, dates, amounts, references, number tokens, legal
    suffixes and a trailing town/country."""
    text = _STAR_REF.sub(_star_ref, description or "")
    for pattern in _STRIP:
        text = pattern.sub(" ", text)
    words = [w for w in clean_text(text).split() if not _HAS_DIGIT.search(w) and w not in _MONTH_WORDS]
    if len(words) > 1:
        words = [w for w in words if w not in _LEGAL] or words
    while len(words) > 1 and words[-1] in _TRAILING:
        words.pop()
    return " ".join(words)


def cache_key(description: str, direction: str) -> str | None:
    """The key, e.g. "debit:tesco stores"; None when nothing distinctive is left to key on."""
    normalised = normalise_description(description)
    if not normalised:
        return None
    return f"{direction}:{normalised}"[:MAX_KEY_LENGTH]


_GENERIC = frozenset(
    "a and at bank bill by card cr credit d dd debit deb direct faster for fp fpi fpo from gb gbp gbr"
    " in account no of on payment payments pos receipt ref reference so standing order tfr the to"
    " transfer via vis visa withdrawal contactless purchase uk ltd mr mrs ms".split()
)


def is_distinctive(normalised: str) -> bool:
    """Whether a normalised description names something (a learned rule on "transfer to" would
    capture every transfer)."""
    return any(word not in _GENERIC for word in normalised.split())


# Card descriptors abroad end with a region: "JOHNNYS BURGERS AUSTIN TX", "CARREFOUR PARIS FR".
_REGION_CODES = frozenset(
    "al ak az ar ca co ct de fl ga hi id il in ia ks ky la me md ma mi mn ms mo mt ne nv nh nj nm ny nc"
    " nd oh ok or pa ri sc sd tn tx ut vt va wa wv wi wy dc on qc bc ab mb sk ns nb nl pe"
    " us usa gb gbr uk fr fra de deu es esp it ita nld be bel ie irl pt prt ch che at aut can au aus nz"
    " dk dnk se swe no nor fi fin pl pol gr grc mx mex jp jpn".split()
)
# First words of two-word cities ("SAN JOSE CA", "NEW YORK NY").
_CITY_FIRST = frozenset(
    "san santa los las new st saint fort ft el la port palm west east north south lake mount mt grand"
    " long salt baton des sioux cedar round glen daly red white".split()
)
_URL = re.compile(r"\bhttps?://\S*|\bwww\.?|\.(?:com|net|org|co\.uk|co|io|de|fr|es|it|nl)\b", re.I)
_STORE_NO = re.compile(
    r"#\s*\d+|\b(?:store|str|no|unit|loc|location|term|terminal)\.?\s*#?\s*\d+\b|\b[a-z]?\d{2,}\b", re.I
)


def merchant_words(
    description: str, prefixes: tuple[str, ...] = (), noise: frozenset[str] = frozenset()
) -> list[str]:
    """The words that name the payee: without processor prefixes ("SQ *", "TST*", "PAYPAL *"),
    store numbers, URL noise, bank noise words, repeated words and a city/state/country tail.

    "WAL-MART #1234 WAL-MART SUPERCENTER PURCHASE HOUSTON TX" → ["wal", "mart", "houston"] is not
    wanted: the tail goes first, then repeats → ["wal", "mart"].
    """
    text = _URL.sub(" ", description or "")
    for pattern in _STRIP:
        text = pattern.sub(" ", text)
    text = _STORE_NO.sub(" ", text)
    words = [w for w in clean_text(text).split() if not _HAS_DIGIT.search(w)]
    # Processor prefixes, possibly several ("PAYPAL *SQ *BAKERY"); only when something follows.
    prefix_words = sorted((tuple(p.split()) for p in prefixes), key=len, reverse=True)
    changed = True
    while changed and len(words) > 1:
        changed = False
        for p in prefix_words:
            if tuple(words[: len(p)]) == p and len(words) > len(p):
                words = words[len(p) :]
                changed = True
                break
    while words and words[-1] in noise and words[-1] not in _REGION_CODES:
        words.pop()
    if words and words[-1] in _REGION_CODES:
        words.pop()
        if len(words) > 2:
            words.pop()  # the city
            if len(words) > 2 and words[-1] in _CITY_FIRST:
                words.pop()
    words = [w for w in words if w not in noise]
    while len(words) > 1 and words[-1] in _TRAILING:
        words.pop()
    out: list[str] = []
    for w in words:
        if w not in out:
            out.append(w)
    return out


# US ACH entries name the payee first, then the bank's fields: "GEICO DES:AUTO PAY ID:123 INDN:SAM
# PATEL CO ID:905 PPD", "COMCAST CABLE COMM PPD ID: 0000123456", "AT&T PAYMENT WEB ID: 98640".
_ACH_FIELDS = re.compile(
    r"\s+(?:des|indn|co\s+id)\s*:.*$|\s+(?:ppd|web|ccd|tel|arc|boc|pop)(?:\s+id\s*:?\s*\S*)?(?=\s|$).*$",
    re.I,
)
# Words banks put before the payee: card and direct-debit markers in US, French, German, Dutch,
# Spanish and Italian statements ("CB", "Kartenzahlung girocard", "BEA Betaalpas", "COMPRA TARJ.",
# "PAGAMENTO POS", "PRLV SEPA", "CHECKCARD 0312").
_LEAD_WORDS = frozenset(
    "cb bea gea betaalpas kartenzahlung girocard lastschrift sepa basislastschrift compra tarj tarjeta"
    " pagamento pos recibo prlv vir checkcard purchase authorized on card debit recurring pmt payment"
    " ach electronic withdrawal web".split()
)


def payee_words(
    description: str, prefixes: tuple[str, ...] = (), noise: frozenset[str] = frozenset()
) -> list[str]:
    """The payee's words (`merchant_words`) without ACH fields and the bank's lead words, so a
    brand's name comes first: "COMPRA TARJ. 5540XXXXXXXX1234 EROSKI CENTER-BILBAO" → ["eroski",
    "center"]."""
    words = merchant_words(_ACH_FIELDS.sub("", description or ""), prefixes, noise)
    while len(words) > 1 and words[0] in _LEAD_WORDS:
        words.pop(0)
    return words
