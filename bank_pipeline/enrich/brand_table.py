"""Build data/brands.json, the brand table, from OpenStreetMap's name-suggestion-index (NSI).

NSI lists tens of thousands of chains with their OSM tags (`amenity=cafe`, `shop=supermarket`,
…). `OSM_TAGS` below is the documented mapping from those tags to this project's category,
subcategory and merchant type (whether that is essential spending follows from the category, see
`categories.py`); tags not in it (banks, ATMs, vending machines, parcel lockers, …) are left out.
The knowledge base reads the table after its own hand-written files, so a name those files
already know keeps their meaning.

Refresh: `npm pack name-suggestion-index@<version>`, then
`python -m bank_pipeline.enrich.brand_table name-suggestion-index-<version>.tgz`, and update
`PINNED_VERSION`/`PINNED_INTEGRITY`. The output depends only on the tarball and this module, so
the same tarball always gives the same bytes (a test checks the shipped file against it).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tarfile
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

from bank_pipeline.enrich.normalise import clean_text

PINNED_VERSION = "8.0.20260918"
# npm's dist.integrity of that version (`npm view name-suggestion-index@<version> dist.integrity`).
PINNED_INTEGRITY = (
    "sha512-g09kxye3aswAETIa//gA56MjonmjcyXCzdIwlDhpBVAwLKXOUJA1QZL5eE4ZRstTFFx9I2o9eARONUXVC72SAw=="
)
DATA_DIR = Path(__file__).with_name("data")
BRANDS_PATH = DATA_DIR / "brands.json"
LICENCE_PATH = DATA_DIR / "brands.LICENSE.md"

# OSM tag → (category, subcategory, merchant type). Order matters only to break ties when one
# name is listed under several tags in equal numbers: the earlier entry wins.
OSM_TAGS: dict[str, tuple[str, str | None, str]] = {
    # food and drink
    "shop=supermarket": ("groceries", "supermarket", "supermarket"),
    "shop=wholesale": ("groceries", "supermarket", "wholesale"),
    "shop=frozen_food": ("groceries", "supermarket", "supermarket"),
    "shop=convenience": ("groceries", "convenience", "convenience_store"),
    "shop=general": ("groceries", "convenience", "convenience_store"),
    "shop=kiosk": ("groceries", "convenience", "convenience_store"),
    "shop=newsagent": ("groceries", "convenience", "newsagent"),
    "shop=alcohol": ("groceries", "convenience", "liquor_store"),
    "shop=wine": ("groceries", "convenience", "liquor_store"),
    "shop=beverages": ("groceries", "convenience", "liquor_store"),
    "shop=butcher": ("groceries", "convenience", "butcher"),
    "shop=greengrocer": ("groceries", "convenience", "greengrocer"),
    "shop=deli": ("groceries", "convenience", "deli"),
    "shop=dairy": ("groceries", "convenience", "food_shop"),
    "shop=health_food": ("groceries", "convenience", "food_shop"),
    "shop=seafood": ("groceries", "convenience", "food_shop"),
    "shop=cheese": ("groceries", "convenience", "food_shop"),
    "shop=spices": ("groceries", "convenience", "food_shop"),
    "shop=nuts": ("groceries", "convenience", "food_shop"),
    "shop=tea": ("groceries", "convenience", "food_shop"),
    "shop=coffee": ("groceries", "convenience", "food_shop"),
    "shop=confectionery": ("groceries", "convenience", "confectionery"),
    "shop=chocolate": ("groceries", "convenience", "confectionery"),
    "amenity=cafe": ("dining", "coffee", "cafe"),
    "amenity=fast_food": ("dining", "takeaway", "fast_food"),
    "amenity=ice_cream": ("dining", "takeaway", "ice_cream"),
    "shop=bakery": ("dining", "takeaway", "bakery"),
    "shop=pastry": ("dining", "takeaway", "bakery"),
    "amenity=restaurant": ("dining", "restaurants", "restaurant"),
    "amenity=pub": ("dining", "pubs_bars", "pub"),
    "amenity=bar": ("dining", "pubs_bars", "bar"),
    # getting about
    "amenity=fuel": ("transport", "fuel", "fuel_station"),
    "waterway=fuel": ("transport", "fuel", "fuel_station"),
    "amenity=charging_station": ("transport", "fuel", "ev_charging"),
    "man_made=charge_point": ("transport", "fuel", "ev_charging"),
    "shop=gas": ("utilities", "energy", "bottled_gas"),
    "amenity=parking": ("transport", "parking", "parking"),
    "amenity=car_wash": ("transport", "car", "car_wash"),
    "amenity=vehicle_inspection": ("transport", "car", "auto_service"),
    "amenity=car_sharing": ("transport", "car", "car_sharing"),
    "shop=car_repair": ("transport", "car", "auto_service"),
    "shop=tyres": ("transport", "car", "auto_service"),
    "shop=car_parts": ("transport", "car", "auto_parts"),
    "shop=motorcycle_repair": ("transport", "car", "auto_service"),
    "shop=truck_repair": ("transport", "car", "auto_service"),
    "shop=car": ("transport", "car", "car_dealer"),
    "shop=motorcycle": ("transport", "car", "car_dealer"),
    "amenity=bicycle_rental": ("transport", "public_transport", "micromobility"),
    "amenity=car_rental": ("travel", "car_hire", "car_hire"),
    "amenity=motorcycle_rental": ("travel", "car_hire", "car_hire"),
    "amenity=driving_school": ("education", "courses", "driving_school"),
    # shopping
    "shop=department_store": ("shopping", "general", "department_store"),
    "shop=variety_store": ("shopping", "general", "discount_store"),
    "shop=mall": ("shopping", "general", "shopping_centre"),
    "shop=catalogue": ("shopping", "general", "retailer"),
    "shop=second_hand": ("shopping", "general", "second_hand"),
    "shop=charity": ("shopping", "general", "charity_shop"),
    "shop=gift": ("shopping", "general", "gift_shop"),
    "shop=party": ("shopping", "general", "gift_shop"),
    "shop=stationery": ("shopping", "general", "stationer"),
    "shop=toys": ("shopping", "general", "toy_store"),
    "shop=baby_goods": ("shopping", "general", "retailer"),
    "shop=tobacco": ("shopping", "general", "tobacconist"),
    "shop=e-cigarette": ("shopping", "general", "tobacconist"),
    "shop=laundry": ("shopping", "general", "laundry"),
    "shop=dry_cleaning": ("shopping", "general", "laundry"),
    "shop=copyshop": ("shopping", "general", "print_shop"),
    "shop=photo": ("shopping", "electronics", "photo_shop"),
    "shop=clothes": ("shopping", "clothing", "clothing_store"),
    "shop=shoes": ("shopping", "clothing", "shoe_store"),
    "shop=fashion_accessories": ("shopping", "clothing", "clothing_store"),
    "shop=bag": ("shopping", "clothing", "clothing_store"),
    "shop=leather": ("shopping", "clothing", "clothing_store"),
    "shop=jewelry": ("shopping", "clothing", "jeweller"),
    "shop=watches": ("shopping", "clothing", "jeweller"),
    "shop=tailor": ("shopping", "clothing", "tailor"),
    "shop=electronics": ("shopping", "electronics", "electronics_store"),
    "shop=computer": ("shopping", "electronics", "electronics_store"),
    # phone shops in the index are mostly the networks' own (Rogers, Verizon): paid for the bill
    "shop=mobile_phone": ("utilities", "mobile", "mobile_network"),
    "shop=mobile_phone_accessories": ("shopping", "electronics", "electronics_store"),
    "shop=hifi": ("shopping", "electronics", "electronics_store"),
    "shop=appliance": ("shopping", "electronics", "electronics_store"),
    "shop=vacuum_cleaner": ("shopping", "electronics", "electronics_store"),
    "shop=printer_ink": ("shopping", "electronics", "electronics_store"),
    "shop=electrical": ("shopping", "electronics", "electronics_store"),
    "shop=camera": ("shopping", "electronics", "electronics_store"),
    "craft=electronics_repair": ("shopping", "electronics", "repair_shop"),
    "shop=books": ("shopping", "books", "bookshop"),
    "shop=furniture": ("shopping", "home", "furniture_store"),
    "shop=bed": ("shopping", "home", "furniture_store"),
    "shop=houseware": ("shopping", "home", "home_store"),
    "shop=kitchen": ("shopping", "home", "home_store"),
    "shop=interior_decoration": ("shopping", "home", "home_store"),
    "shop=household_linen": ("shopping", "home", "home_store"),
    "shop=lighting": ("shopping", "home", "home_store"),
    "shop=candles": ("shopping", "home", "home_store"),
    "shop=curtain": ("shopping", "home", "home_store"),
    "shop=window_blind": ("shopping", "home", "home_store"),
    "shop=carpet": ("shopping", "home", "home_store"),
    "shop=flooring": ("shopping", "home", "home_store"),
    "shop=tiles": ("shopping", "home", "home_store"),
    "shop=bathroom_furnishing": ("shopping", "home", "home_store"),
    "shop=doityourself": ("shopping", "home", "diy_store"),
    "shop=hardware": ("shopping", "home", "diy_store"),
    "shop=paint": ("shopping", "home", "diy_store"),
    "shop=trade": ("shopping", "home", "diy_store"),
    "shop=power_tools": ("shopping", "home", "diy_store"),
    "shop=tool_hire": ("shopping", "home", "diy_store"),
    "shop=garden_centre": ("shopping", "home", "garden_centre"),
    "shop=agrarian": ("shopping", "home", "farm_store"),
    "shop=country_store": ("shopping", "home", "farm_store"),
    "shop=florist": ("gifts", "gifts", "florist"),
    # leisure
    "shop=sports": ("fitness", "sports", "sports_store"),
    "shop=outdoor": ("fitness", "sports", "sports_store"),
    "shop=bicycle": ("fitness", "sports", "sports_store"),
    "leisure=fitness_centre": ("fitness", "gym", "gym"),
    "leisure=sports_centre": ("fitness", "gym", "gym"),
    "leisure=sauna": ("fitness", "gym", "gym"),
    "leisure=dance": ("fitness", "sports", "dance_studio"),
    "amenity=cinema": ("entertainment", "cinema", "cinema"),
    "tourism=theme_park": ("entertainment", "events", "theme_park"),
    "leisure=bowling_alley": ("entertainment", "events", "venue"),
    "leisure=escape_game": ("entertainment", "events", "venue"),
    "leisure=trampoline_park": ("entertainment", "events", "venue"),
    "leisure=indoor_play": ("entertainment", "events", "venue"),
    "leisure=miniature_golf": ("entertainment", "events", "venue"),
    "leisure=high_ropes_course": ("entertainment", "events", "venue"),
    "leisure=amusement_arcade": ("entertainment", "games", "arcade"),
    "leisure=adult_gaming_centre": ("entertainment", "games", "gambling"),
    "amenity=karaoke_box": ("entertainment", "events", "venue"),
    "shop=ticket": ("entertainment", "events", "ticketing"),
    "amenity=casino": ("entertainment", "games", "gambling"),
    "amenity=gambling": ("entertainment", "games", "gambling"),
    "shop=bookmaker": ("entertainment", "games", "gambling"),
    "shop=lottery": ("entertainment", "games", "gambling"),
    "shop=video_games": ("entertainment", "games", "games_store"),
    "shop=games": ("entertainment", "games", "games_store"),
    "shop=anime": ("entertainment", "hobbies", "hobby_shop"),
    "shop=model": ("entertainment", "hobbies", "hobby_shop"),
    "shop=craft": ("entertainment", "hobbies", "craft_store"),
    "shop=art": ("entertainment", "hobbies", "craft_store"),
    "shop=frame": ("entertainment", "hobbies", "craft_store"),
    "shop=fabric": ("entertainment", "hobbies", "craft_store"),
    "shop=music": ("entertainment", "hobbies", "music_shop"),
    "shop=musical_instrument": ("entertainment", "hobbies", "music_shop"),
    "shop=fishing": ("entertainment", "hobbies", "hobby_shop"),
    "amenity=internet_cafe": ("entertainment", "games", "internet_cafe"),
    # travel
    "tourism=hotel": ("travel", "hotels", "hotel"),
    "tourism=motel": ("travel", "hotels", "hotel"),
    "tourism=hostel": ("travel", "hotels", "hotel"),
    "tourism=caravan_site": ("travel", "holiday", "holiday_park"),
    "shop=travel_agency": ("travel", "holiday", "travel_agent"),
    # health and care
    "amenity=pharmacy": ("health", "pharmacy", "pharmacy"),
    "shop=nutrition_supplements": ("health", "pharmacy", "pharmacy"),
    "shop=herbalist": ("health", "pharmacy", "pharmacy"),
    "amenity=dentist": ("health", "dental", "dentist"),
    "amenity=doctors": ("health", "medical", "clinic"),
    "amenity=clinic": ("health", "medical", "clinic"),
    "amenity=hospital": ("health", "medical", "hospital"),
    "healthcare=laboratory": ("health", "medical", "laboratory"),
    "healthcare=sample_collection": ("health", "medical", "laboratory"),
    "healthcare=physiotherapist": ("health", "medical", "clinic"),
    "healthcare=rehabilitation": ("health", "medical", "clinic"),
    "healthcare=dialysis": ("health", "medical", "clinic"),
    "healthcare=counselling": ("health", "medical", "clinic"),
    "healthcare=alternative": ("health", "medical", "clinic"),
    "healthcare=audiologist": ("health", "medical", "clinic"),
    "shop=hearing_aids": ("health", "medical", "clinic"),
    "shop=medical_supply": ("health", "medical", "medical_supply"),
    "shop=optician": ("health", "optician", "optician"),
    "shop=chemist": ("personal_care", "toiletries", "drugstore"),
    "shop=cosmetics": ("personal_care", "toiletries", "beauty_store"),
    "shop=perfumery": ("personal_care", "toiletries", "beauty_store"),
    "shop=beauty": ("personal_care", "hair_beauty", "beauty_salon"),
    "shop=hairdresser": ("personal_care", "hair_beauty", "hair_salon"),
    "shop=hairdresser_supply": ("personal_care", "hair_beauty", "beauty_store"),
    "shop=massage": ("personal_care", "hair_beauty", "beauty_salon"),
    "shop=tattoo": ("personal_care", "hair_beauty", "beauty_salon"),
    # pets
    "shop=pet": ("pets", "pet_supplies", "pet_store"),
    "amenity=veterinary": ("pets", "vet", "vet"),
    "amenity=animal_boarding": ("pets", "vet", "animal_boarding"),
    # children and learning
    "amenity=kindergarten": ("childcare", "nursery", "nursery"),
    "amenity=childcare": ("childcare", "nursery", "nursery"),
    "amenity=school": ("childcare", "school", "school"),
    "amenity=prep_school": ("education", "courses", "tutoring"),
    "amenity=language_school": ("education", "courses", "language_school"),
    "amenity=music_school": ("education", "courses", "music_school"),
    "amenity=training": ("education", "courses", "training"),
    "amenity=college": ("education", "tuition", "college"),
    "amenity=university": ("education", "tuition", "university"),
    # home, bills and money
    "shop=telecommunication": ("utilities", "mobile", "mobile_network"),
    "office=telecommunication": ("utilities", "mobile", "mobile_network"),
    "office=insurance": ("insurance", None, "insurer"),
    "office=estate_agent": ("housing", "rent", "letting_agent"),
    "office=mortgage": ("housing", "mortgage", "lender"),
    "shop=storage_rental": ("housing", "rent", "self_storage"),
    "office=moving_company": ("housing", "maintenance", "removals"),
    "shop=locksmith": ("housing", "maintenance", "tradesperson"),
    "craft=plumber": ("housing", "maintenance", "tradesperson"),
    "craft=electrician": ("housing", "maintenance", "tradesperson"),
    "craft=carpenter": ("housing", "maintenance", "tradesperson"),
    "craft=painter": ("housing", "maintenance", "tradesperson"),
    "craft=glaziery": ("housing", "maintenance", "tradesperson"),
    "craft=window_construction": ("housing", "maintenance", "tradesperson"),
    "craft=cleaning": ("housing", "maintenance", "cleaning"),
    "shop=pest_control": ("housing", "maintenance", "tradesperson"),
    "shop=money_lender": ("debt_repayment", "loan", "lender"),
    "shop=pawnbroker": ("debt_repayment", "loan", "lender"),
    "amenity=money_transfer": ("transfers", "to_others", "money_transfer"),
    "amenity=post_office": ("shopping", "general", "post_office"),
    # operators and transit networks (OPERATOR_TAGS, TRANSIT_TAGS): who sends the household bill
    # or sells the ticket
    "power=minor_line": ("utilities", "energy", "energy_supplier"),
    "office=water_utility": ("utilities", "water", "water_supplier"),
    "man_made=water_works": ("utilities", "water", "water_supplier"),
    "route=train": ("transport", "rail", "rail_operator"),
    "route=subway": ("transport", "public_transport", "transit"),
    "route=light_rail": ("transport", "public_transport", "transit"),
    "route=tram": ("transport", "public_transport", "transit"),
    "route=bus": ("transport", "public_transport", "transit"),
    "route=trolleybus": ("transport", "public_transport", "transit"),
    "route=ferry": ("transport", "public_transport", "ferry"),
}
# Besides brands, NSI lists operators (of power lines, water works, …) and transit networks; only
# these are read: the local electricity network and the water company bill households, and a
# ticket names the network. (Operators of schools, parks, post boxes bill nobody.)
OPERATOR_TAGS = frozenset({"power=minor_line", "office=water_utility", "man_made=water_works"})
TRANSIT_TAGS = frozenset(
    {
        "route=train",
        "route=subway",
        "route=light_rail",
        "route=tram",
        "route=bus",
        "route=trolleybus",
        "route=ferry",
    }
)

# Names too plain to identify a chain in a bank description ("NEXT" is a clothes shop, but
# "NEXT DAY DELIVERY" is not): never used as an alias on their own.
PLAIN_WORDS = frozenset(
    """
    a about action active after air all alpha america american and apple arena art at auto back bar
    base bay beauty bed best big bill bio black blue body box bravo bright brothers burger buy cafe
    call car card care cash center central centre charge check city classic clean club coffee
    community connect corner country cross day deal deals delivery dental depot design direct
    discount doctor dollar drive east easy eat eco energy euro europe everyday express family farm
    fast fashion first fit fitness five fix flash food foods for four free fresh friends from fuel
    fun garden gas general global go gold golden good grand great green group guide hair happy
    health home hot house hub in inn interest international it just kids king kitchen land life
    light line link little live local london love mail main mark market max me medical metro mini
    mobile modern money more motor motors my national natural nature net new next nice north now
    office oil on one online open orange order original out pay payment people pet pets phone pizza
    plus point post power premier prime pro quick rapid red rent repair right road rock royal safe
    sale save service services shell shop shopping smart smile solutions south sport sports square
    standard star station store street style sun super supermarket supply target taxi tech the
    three time to today top total town trade travel tree two union united universal up us value
    vision wash way we west white wine with world you your zone
    """.split()
)
_MIN_LETTERS = 4
# A name listed both as a fuel station and as its forecourt shop ("Marathon") is fuel on a card
# statement; a supermarket with fuel stations of the same name ("Coles") stays a supermarket.
FORECOURT_SHOPS = frozenset({"shop=convenience", "shop=kiosk"})
# Words that say what kind of business a name is ("pizza", "apotheke", "dental"): a word in the
# names of at least WORD_MIN_BRANDS brands, WORD_MIN_SHARE of them in one category.
WORD_MIN_BRANDS = 4
WORD_MIN_SHARE = 0.75
_WORD_SKIP = frozenset("the and of de la le les el los das der die du des di da do del von van et y".split())
_QUALIFIER = re.compile(r"\s*\([^)]*\)")  # "Aldi (Aldi Nord group)": OSM's note, not the name
_NAME_KEYS = ("name", "brand", "name:en", "brand:en", "short_name", "official_name")


def fold(text: str) -> str:
    """Accents off ("Caffè" → "Caffe") before the shared cleaning, so Latin names keep their letters."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return clean_text("".join(c for c in decomposed if not unicodedata.combining(c)))


def _usable(alias: str, generic: list[re.Pattern[str]]) -> bool:
    words = alias.split()
    if not words or len(words) > 6:
        return False
    if sum(c.isalpha() for c in alias) < _MIN_LETTERS:
        return False
    if all(w in PLAIN_WORDS or w.isdigit() for w in words):
        return False
    return not any(p.search(alias) for p in generic)


def _item_names(item: dict, kind: str) -> list[str]:
    tags = item.get("tags", {})
    names = [item.get("displayName", "")]
    keys = (
        _NAME_KEYS if kind == "brands" else (*_NAME_KEYS, "operator", "network", "operator:en", "network:en")
    )
    names += [tags.get(k, "") for k in keys]
    names += item.get("matchNames", [])
    return [_QUALIFIER.sub("", n).strip() for n in names if n]


def build(nsi: dict, generic_words: list[str], version: str) -> dict:
    """NSI's `nsi.json` "nsi" part (and `genericWords.json`) → the brand table, written as JSON."""
    generic = [re.compile(p, re.IGNORECASE) for p in generic_words]
    order = {tag: i for i, tag in enumerate(OSM_TAGS)}
    # alias → Counter of tags naming it; alias → display name per tag (the first seen, sorted input)
    votes: dict[str, Counter] = defaultdict(Counter)
    display: dict[tuple[str, str], str] = {}
    from_brands: set[str] = set()  # kind-of-business words are learnt from shops' names only
    for path in sorted(nsi):
        kind, key, value = (path.split("/") + ["", "", ""])[:3]
        tag = f"{key}={value}"
        wanted = {"brands": OSM_TAGS, "operators": OPERATOR_TAGS, "transit": TRANSIT_TAGS}.get(kind, ())
        if tag not in wanted or tag not in OSM_TAGS:
            continue
        for item in sorted(nsi[path]["items"], key=lambda i: i.get("id", "")):
            shown = _QUALIFIER.sub("", item.get("tags", {}).get("brand:en") or item.get("displayName") or "")
            shown = shown.strip()
            for name in _item_names(item, kind):
                alias = fold(name)
                if not _usable(alias, generic):
                    continue
                votes[alias][tag] += 1
                if kind == "brands":
                    from_brands.add(alias)
                display.setdefault((alias, tag), shown if fold(shown) else name)
    groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for alias in sorted(votes):
        tag = min(votes[alias], key=lambda t: (-votes[alias][t], order[t]))
        if tag in FORECOURT_SHOPS and "amenity=fuel" in votes[alias]:
            tag = "amenity=fuel"
        category, sub, mtype = OSM_TAGS[tag]
        groups[f"{category}|{sub or ''}|{mtype}"][display[(alias, tag)]].append(alias)
    return {
        "words": kind_words(groups, from_brands),
        "about": (
            "Brand, utility and transit network names from OpenStreetMap's name-suggestion-index "
            "(BSD-3-Clause, see brands.LICENSE.md), mapped to categories by bank_pipeline/enrich/brand_table.py"
        ),
        "source": f"name-suggestion-index@{version}",
        "groups": {
            key: sorted([name, *aliases] for name, aliases in names.items())
            for key, names in sorted(groups.items())
        },
    }


def kind_words(groups: dict[str, dict[str, list[str]]], learn_from: set[str]) -> dict[str, list]:
    """word → [category|subcategory|type, share of its brands in that category, brands]: the
    vocabulary of business kinds in every language the index covers, learnt from brand names."""
    per_word: dict[str, Counter] = defaultdict(Counter)
    keys: dict[str, Counter] = defaultdict(Counter)
    for key, names in groups.items():
        category = key.split("|")[0]
        for aliases in names.values():
            for word in {w for alias in aliases if alias in learn_from for w in alias.split()}:
                if len(word) >= 3 and word not in _WORD_SKIP and not any(c.isdigit() for c in word):
                    per_word[word][category] += 1
                    keys[word][key] += 1
    out = {}
    for word in sorted(per_word):
        total = sum(per_word[word].values())
        category, count = min(per_word[word].items(), key=lambda kv: (-kv[1], kv[0]))
        if total >= WORD_MIN_BRANDS and count / total >= WORD_MIN_SHARE:
            key = min(
                (k for k in keys[word] if k.startswith(f"{category}|")), key=lambda k: (-keys[word][k], k)
            )
            out[word] = [key, round(count / total, 2), total]
    return out


def dumps(table: dict) -> bytes:
    """Compact, one group per line, so a refresh reads as a diff."""
    lines = [
        "{",
        f'"about": {json.dumps(table["about"])},',
        f'"source": {json.dumps(table["source"])},',
        f'"words": {json.dumps(table["words"], ensure_ascii=False, separators=(",", ":"), sort_keys=True)},',
        '"groups": {',
    ]
    items = list(table["groups"].items())
    for i, (key, brands) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(
            f"{json.dumps(key)}: {json.dumps(brands, ensure_ascii=False, separators=(',', ':'))}{comma}"
        )
    lines += ["}", "}", ""]
    return "\n".join(lines).encode("utf-8")


def from_tarball(tarball: Path) -> tuple[bytes, bytes]:
    """(brands.json bytes, licence notice bytes) from an `npm pack` tarball of the index."""
    with tarfile.open(tarball, "r:gz") as tar:

        def read(name: str) -> bytes:
            member = tar.extractfile(f"package/{name}")
            if member is None:
                raise ValueError(f"{tarball}: no package/{name}")
            return member.read()

        raw = json.load(io.BytesIO(read("dist/json/nsi.min.json")))
        generic = json.load(io.BytesIO(read("dist/json/genericWords.min.json")))
        licence = read("LICENSE.md")
    table = build(raw["nsi"], _generic(generic), str(raw["_meta"]["version"]))
    notice = (
        b"The brand table data/brands.json is derived from the name-suggestion-index "
        b"(https://github.com/osmlab/name-suggestion-index), version "
        + table["source"].split("@")[1].encode()
        + b", under this licence:\n\n"
        + licence
    )
    return dumps(table), notice


def _generic(raw) -> list[str]:
    words = raw.get("genericWords", raw) if isinstance(raw, dict) else raw
    return [str(w) for w in words]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bank_pipeline.enrich.brand_table", description=__doc__)
    parser.add_argument("tarball", type=Path, help="name-suggestion-index-<version>.tgz from `npm pack`")
    parser.add_argument("--out", type=Path, default=BRANDS_PATH)
    args = parser.parse_args(argv)
    table, notice = from_tarball(args.tarball)
    args.out.write_bytes(table)
    args.out.with_name(LICENCE_PATH.name).write_bytes(notice)
    print(f"wrote {args.out} ({len(table)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
