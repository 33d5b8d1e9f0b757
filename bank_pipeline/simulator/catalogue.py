"""UK merchants, billers and employers the synthetic data is drawn from.

Each merchant knows its hidden ground truth (`true_category`/`true_subcategory`, keys of
`bank_pipeline.categories.DEFAULT_CATEGORIES`) and what TrueLayer would say about it
(`transaction_category` enum, `transaction_classification`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Merchant:
    key: str
    names: tuple[str, ...]  # how it appears in descriptions (one chosen per purchase)
    merchant_name: str | None  # TrueLayer's merchant_name (None: never recognised)
    category: str
    subcategory: str
    classification: tuple[str, ...]
    low: int  # amount range in pence
    high: int
    hours: tuple[int, int] = (8, 21)
    online: bool = False
    prices: tuple[int, ...] = ()  # fixed price list (pence), e.g. coffees
    ref_suffix: bool = False  # AMAZON.CO.UK*2K4ZZ91X4 style order references
    tip: bool = False  # pending amount lacks the tip added when it books
    refundable: bool = False


def _m(key, names, merchant_name, cat, sub, cls, low, high, **kw) -> Merchant:
    if isinstance(names, str):
        names = (names,)
    return Merchant(key, tuple(names), merchant_name, cat, sub, tuple(cls), low, high, **kw)


GROCERIES = [
    _m(
        "tesco",
        ("TESCO STORES 3297", "TESCO STORES 2041", "TESCO EXPRESS 4418"),
        "Tesco",
        "groceries",
        "supermarket",
        ("Shopping", "Groceries"),
        450,
        9500,
        hours=(8, 21),
    ),
    _m(
        "sainsburys",
        ("SAINSBURYS S/MKTS", "SAINSBURY'S SUPERMARKET", "SAINSBURYS SMRKT STORE 128"),
        "Sainsbury's",
        "groceries",
        "supermarket",
        ("Shopping", "Groceries"),
        600,
        11000,
    ),
    _m(
        "aldi",
        ("ALDI 72 724", "ALDI STORES"),
        "Aldi",
        "groceries",
        "supermarket",
        ("Shopping", "Groceries"),
        800,
        7500,
    ),
    _m(
        "lidl",
        ("LIDL GB LONDON", "LIDL GB"),
        "Lidl",
        "groceries",
        "supermarket",
        ("Shopping", "Groceries"),
        700,
        6500,
    ),
    _m(
        "mands",
        ("M&S SIMPLY FOOD", "M&S SIMPLY FOOD - SSA"),
        "Marks & Spencer",
        "groceries",
        "supermarket",
        ("Shopping", "Groceries"),
        350,
        3800,
        hours=(11, 20),
    ),
    _m(
        "waitrose",
        ("WAITROSE 681", "WAITROSE & PARTNERS"),
        "Waitrose",
        "groceries",
        "supermarket",
        ("Shopping", "Groceries"),
        900,
        9000,
    ),
    _m(
        "coop",
        ("CO-OP GROUP 070412", "COOP FOOD"),
        "Co-op",
        "groceries",
        "convenience",
        ("Shopping", "Groceries"),
        180,
        2400,
        hours=(7, 22),
    ),
]

COFFEE = [
    _m(
        "pret",
        ("PRET A MANGER", "PRET A MANGER KINGS X"),
        "Pret A Manger",
        "dining",
        "coffee",
        ("Food & Dining", "Coffee shops"),
        0,
        0,
        hours=(7, 14),
        prices=(345, 395, 420, 560, 785),
    ),
    _m(
        "costa",
        ("COSTA COFFEE 43019", "COSTA COFFEE"),
        "Costa Coffee",
        "dining",
        "coffee",
        ("Food & Dining", "Coffee shops"),
        0,
        0,
        hours=(7, 17),
        prices=(310, 340, 375, 395),
    ),
    _m(
        "starbucks",
        "STARBUCKS",
        "Starbucks",
        "dining",
        "coffee",
        ("Food & Dining", "Coffee shops"),
        0,
        0,
        hours=(7, 17),
        prices=(325, 365, 415),
    ),
    _m(
        "nero",
        "CAFFE NERO",
        "Caffe Nero",
        "dining",
        "coffee",
        ("Food & Dining", "Coffee shops"),
        0,
        0,
        hours=(7, 17),
        prices=(295, 340, 380),
    ),
]

EATING = [
    _m(
        "deliveroo",
        ("DELIVEROO", "DELIVEROO.CO.UK"),
        "Deliveroo",
        "dining",
        "takeaway",
        ("Food & Dining", "Fast Food"),
        1200,
        4200,
        hours=(18, 22),
        online=True,
        refundable=True,
    ),
    _m(
        "justeat",
        ("JUST EAT", "JUST EAT.CO.UK LTD"),
        "Just Eat",
        "dining",
        "takeaway",
        ("Food & Dining", "Fast Food"),
        1100,
        3800,
        hours=(18, 22),
        online=True,
    ),
    _m(
        "ubereats",
        "UBER *EATS",
        "Uber Eats",
        "dining",
        "takeaway",
        ("Food & Dining", "Fast Food"),
        1300,
        3600,
        hours=(18, 22),
        online=True,
    ),
    _m(
        "nandos",
        ("NANDOS", "NANDOS SHOREDITCH"),
        "Nando's",
        "dining",
        "restaurants",
        ("Food & Dining", "Restaurants"),
        1400,
        4800,
        hours=(12, 21),
        tip=True,
    ),
    _m(
        "wagamama",
        "WAGAMAMA",
        "Wagamama",
        "dining",
        "restaurants",
        ("Food & Dining", "Restaurants"),
        1600,
        5200,
        hours=(12, 21),
        tip=True,
    ),
    _m(
        "pizzaexpress",
        "PIZZA EXPRESS",
        "Pizza Express",
        "dining",
        "restaurants",
        ("Food & Dining", "Restaurants"),
        1800,
        6200,
        hours=(12, 21),
        tip=True,
    ),
    _m(
        "dishoom",
        "DISHOOM KINGS CROSS",
        "Dishoom",
        "dining",
        "restaurants",
        ("Food & Dining", "Restaurants"),
        2500,
        9000,
        hours=(12, 22),
        tip=True,
    ),
    _m(
        "spoons",
        ("J D WETHERSPOON", "WETHERSPOONS"),
        "JD Wetherspoon",
        "dining",
        "pubs_bars",
        ("Food & Dining", "Alcohol & Bars"),
        450,
        3200,
        hours=(17, 23),
    ),
    _m(
        "redlion",
        "THE RED LION",
        None,
        "dining",
        "pubs_bars",
        ("Food & Dining", "Alcohol & Bars"),
        520,
        4500,
        hours=(17, 23),
    ),
    _m(
        "greggs",
        "GREGGS",
        "Greggs",
        "dining",
        "takeaway",
        ("Food & Dining", "Fast Food"),
        0,
        0,
        hours=(8, 15),
        prices=(115, 165, 295, 430),
    ),
]

TRANSPORT = [
    _m(
        "tfl",
        ("TFL TRAVEL CH", "TFL.GOV.UK/CP"),
        "TfL",
        "transport",
        "public_transport",
        ("Auto & Transport", "Public transport"),
        0,
        0,
        hours=(21, 23),
        prices=(280, 560, 840, 1050, 1480),
    ),
    _m(
        "trainline",
        ("TRAINLINE", "TRAINLINE.COM"),
        "Trainline",
        "transport",
        "rail",
        ("Auto & Transport", "Public transport"),
        1150,
        14500,
        online=True,
        refundable=True,
    ),
    _m(
        "uber",
        ("UBER *TRIP", "UBER *TRIP HELP.UBER.COM"),
        "Uber",
        "transport",
        "taxi",
        ("Auto & Transport", "Taxi"),
        780,
        3400,
        hours=(0, 23),
        online=True,
    ),
    _m(
        "shell",
        ("SHELL", "SHELL HOLLOWAY RD"),
        "Shell",
        "transport",
        "fuel",
        ("Auto & Transport", "Gas & Fuel"),
        3000,
        8500,
    ),
    _m(
        "bp",
        ("BP CONNECT", "BP HIGHBURY"),
        "BP",
        "transport",
        "fuel",
        ("Auto & Transport", "Gas & Fuel"),
        2800,
        8000,
    ),
    _m("ringgo", "RINGGO", "RingGo", "transport", "parking", ("Auto & Transport", "Parking"), 180, 1250),
]

SHOPPING = [
    _m(
        "amazon",
        ("AMAZON.CO.UK*", "AMZNMKTPLACE AMAZON.CO.UK*", "AMAZON.CO.UK MKTPLCE*"),
        "Amazon",
        "shopping",
        "general",
        ("Shopping", "General"),
        499,
        8999,
        online=True,
        ref_suffix=True,
        hours=(0, 23),
        refundable=True,
    ),
    _m(
        "argos",
        ("ARGOS LTD", "ARGOS"),
        "Argos",
        "shopping",
        "general",
        ("Shopping", "General"),
        899,
        12999,
        refundable=True,
    ),
    _m(
        "johnlewis",
        ("JOHN LEWIS", "JOHN LEWIS PLC"),
        "John Lewis",
        "shopping",
        "home",
        ("Shopping", "Home"),
        1500,
        25000,
        refundable=True,
    ),
    _m("ikea", "IKEA LTD", "IKEA", "shopping", "home", ("Home", "Furnishings"), 1200, 32000),
    _m(
        "primark",
        "PRIMARK",
        "Primark",
        "shopping",
        "clothing",
        ("Shopping", "Clothing"),
        600,
        6000,
        refundable=True,
    ),
    _m(
        "next",
        ("NEXT RETAIL LTD", "NEXT DIRECTORY"),
        "Next",
        "shopping",
        "clothing",
        ("Shopping", "Clothing"),
        1800,
        12000,
        refundable=True,
    ),
    _m(
        "currys",
        "CURRYS",
        "Currys",
        "shopping",
        "electronics",
        ("Shopping", "Electronics & Software"),
        1999,
        69999,
        refundable=True,
    ),
    _m("waterstones", "WATERSTONES", "Waterstones", "shopping", "books", ("Shopping", "Books"), 799, 3500),
    _m(
        "boots",
        ("BOOTS 1234", "BOOTS THE CHEMIST"),
        "Boots",
        "health",
        "pharmacy",
        ("Health & Fitness", "Pharmacy"),
        250,
        3500,
    ),
    _m(
        "superdrug",
        "SUPERDRUG",
        "Superdrug",
        "personal_care",
        "toiletries",
        ("Shopping", "Personal care"),
        300,
        2500,
    ),
    _m(
        "toniguy",
        "TONI&GUY",
        None,
        "personal_care",
        "hair_beauty",
        ("Personal Care", "Hair"),
        3500,
        8500,
        hours=(10, 18),
    ),
    _m(
        "petsathome",
        "PETS AT HOME",
        "Pets at Home",
        "pets",
        "pet_supplies",
        ("Pets", "Pet Food & Supplies"),
        800,
        5500,
    ),
    _m(
        "odeon",
        "ODEON CINEMAS",
        "Odeon",
        "entertainment",
        "cinema",
        ("Entertainment", "Movies & DVDs"),
        1050,
        3400,
        hours=(17, 22),
    ),
    _m(
        "ticketmaster",
        "TICKETMASTER UK",
        "Ticketmaster",
        "entertainment",
        "events",
        ("Entertainment", "Arts"),
        2500,
        18000,
        online=True,
    ),
    _m(
        "steam",
        "STEAMGAMES.COM 4259522985",
        "Steam",
        "entertainment",
        "games",
        ("Entertainment", "Games"),
        399,
        5999,
        online=True,
        hours=(0, 23),
    ),
    _m(
        "specsavers",
        "SPECSAVERS OPTICIANS",
        "Specsavers",
        "health",
        "optician",
        ("Health & Fitness", "Eyecare"),
        2500,
        18900,
    ),
    _m(
        "justgiving",
        "JUSTGIVING",
        "JustGiving",
        "charity",
        "donations",
        ("Gifts & Donations", "Charity"),
        500,
        5000,
        online=True,
    ),
    _m(
        "moonpig",
        "MOONPIG.COM",
        "Moonpig",
        "gifts",
        "gifts",
        ("Gifts & Donations", "Gift"),
        399,
        4500,
        online=True,
    ),
]

TRAVEL = [
    _m(
        "easyjet",
        ("EASYJET", "EASYJET AIRLINE CO"),
        "easyJet",
        "travel",
        "flights",
        ("Travel", "Air Travel"),
        4500,
        32000,
        online=True,
    ),
    _m(
        "ryanair",
        "RYANAIR",
        "Ryanair",
        "travel",
        "flights",
        ("Travel", "Air Travel"),
        2900,
        24000,
        online=True,
    ),
    _m(
        "booking",
        "BOOKING.COM",
        "Booking.com",
        "travel",
        "hotels",
        ("Travel", "Hotel"),
        8000,
        62000,
        online=True,
    ),
    _m("premierinn", "PREMIER INN", "Premier Inn", "travel", "hotels", ("Travel", "Hotel"), 5500, 16000),
]

# Monthly card subscriptions: (merchant, day of month)
SUBSCRIPTIONS = {
    "netflix": (
        _m(
            "netflix",
            "NETFLIX.COM",
            "Netflix",
            "subscriptions",
            "streaming",
            ("Entertainment", "Movies & DVDs"),
            1099,
            1099,
            online=True,
            hours=(2, 5),
        ),
        5,
    ),
    "spotify": (
        _m(
            "spotify",
            ("SPOTIFY UK", "SPOTIFY P1A2B3C4D5"),
            "Spotify",
            "subscriptions",
            "streaming",
            ("Entertainment", "Music"),
            1199,
            1199,
            online=True,
            hours=(2, 5),
        ),
        19,
    ),
    "prime": (
        _m(
            "prime",
            "AMAZON PRIME*",
            "Amazon Prime",
            "subscriptions",
            "memberships",
            ("Shopping", "General"),
            899,
            899,
            online=True,
            ref_suffix=True,
            hours=(2, 5),
        ),
        14,
    ),
    "disney": (
        _m(
            "disney",
            "DISNEY PLUS",
            "Disney+",
            "subscriptions",
            "streaming",
            ("Entertainment", "Movies & DVDs"),
            799,
            799,
            online=True,
            hours=(2, 5),
        ),
        22,
    ),
    "ms365": (
        _m(
            "ms365",
            "MICROSOFT*365 PERSONAL",
            "Microsoft",
            "subscriptions",
            "software",
            ("Shopping", "Electronics & Software"),
            599,
            599,
            online=True,
            hours=(2, 5),
        ),
        9,
    ),
    "guardian": (
        _m(
            "guardian",
            "GUARDIAN NEWS & MEDIA",
            "The Guardian",
            "subscriptions",
            "news",
            ("Entertainment", "Newspapers & Magazines"),
            1200,
            1200,
            online=True,
            hours=(2, 5),
        ),
        3,
    ),
}


@dataclass(frozen=True)
class Biller:
    """A direct debit (or standing order) payee."""

    key: str
    name: str
    category: str
    subcategory: str
    classification: tuple[str, ...]
    dom: int
    low: int
    high: int
    months: tuple[int, ...] = tuple(range(1, 13))
    seasonal: bool = False  # energy: dearer in winter


BILLERS = {
    "octopus": Biller(
        "octopus",
        "OCTOPUS ENERGY",
        "utilities",
        "energy",
        ("Bills and Utilities", "Utilities"),
        15,
        6500,
        16500,
        seasonal=True,
    ),
    "britishgas": Biller(
        "britishgas",
        "BRITISH GAS",
        "utilities",
        "energy",
        ("Bills and Utilities", "Utilities"),
        18,
        5500,
        14500,
        seasonal=True,
    ),
    "thameswater": Biller(
        "thameswater",
        "THAMES WATER",
        "utilities",
        "water",
        ("Bills and Utilities", "Utilities"),
        20,
        3800,
        3800,
    ),
    "bt": Biller(
        "bt", "BT GROUP PLC", "utilities", "broadband", ("Bills and Utilities", "Internet"), 8, 3299, 3299
    ),
    "virgin": Biller(
        "virgin",
        "VIRGIN MEDIA",
        "utilities",
        "broadband",
        ("Bills and Utilities", "Internet"),
        11,
        4600,
        4600,
    ),
    "ee": Biller(
        "ee", "EE LIMITED", "utilities", "mobile", ("Bills and Utilities", "Mobile Phone"), 12, 1800, 2400
    ),
    "vodafone": Biller(
        "vodafone",
        "VODAFONE LTD",
        "utilities",
        "mobile",
        ("Bills and Utilities", "Mobile Phone"),
        17,
        1500,
        2100,
    ),
    "tvlicence": Biller(
        "tvlicence",
        "TV LICENCE MBP",
        "utilities",
        "tv_licence",
        ("Bills and Utilities", "Television"),
        1,
        1425,
        1425,
    ),
    "ctax": Biller(
        "ctax",
        "LB HACKNEY CTAX",
        "housing",
        "council_tax",
        ("Bills and Utilities", "Taxes"),
        1,
        16500,
        16500,
        months=(4, 5, 6, 7, 8, 9, 10, 11, 12, 1),
    ),
    "ctax_leeds": Biller(
        "ctax_leeds",
        "LEEDS CITY COUNCIL",
        "housing",
        "council_tax",
        ("Bills and Utilities", "Taxes"),
        1,
        14200,
        14200,
        months=(4, 5, 6, 7, 8, 9, 10, 11, 12, 1),
    ),
    "mortgage": Biller(
        "mortgage",
        "NATIONWIDE BS MORTGAGE",
        "housing",
        "mortgage",
        ("Home", "Mortgage & Rent"),
        1,
        98500,
        98500,
    ),
    "aviva": Biller(
        "aviva", "AVIVA INSURANCE", "insurance", "home", ("Bills and Utilities", "Insurance"), 6, 1850, 1850
    ),
    "directline": Biller(
        "directline",
        "DIRECT LINE INS",
        "insurance",
        "car",
        ("Auto & Transport", "Auto Insurance"),
        23,
        4210,
        4210,
    ),
    "puregym": Biller("puregym", "PUREGYM LTD", "fitness", "gym", ("Health & Fitness", "Gym"), 2, 2499, 2499),
    "nursery": Biller(
        "nursery", "BRIGHT HORIZONS", "childcare", "nursery", ("Kids", "Childcare"), 1, 65000, 65000
    ),
}

EMPLOYERS = (
    "ACME LTD",
    "GLOBEX UK LTD",
    "INITECH SERVICES",
    "UMBRELLA CORP UK",
    "STARK INDUSTRIES LTD",
    "WAYNE ENTERPRISES",
    "HOOLI EUROPE LTD",
    "VANDELAY IND",
    "MASSIVE DYNAMIC",
    "SOYLENT FOODS PLC",
)

TOWNS = ("LONDON", "MANCHESTER", "LEEDS", "BRISTOL", "BRIGHTON", "CAMBRIDGE", "YORK", "CARDIFF")
PEOPLE = ("J SMITH", "M JONES", "A PATEL", "S WILLIAMS", "R BROWN", "K TAYLOR", "L DAVIES", "H KHAN")
FRIEND_REFS = ("DINNER", "RENT SHARE", "BIRTHDAY", "THANKS", "HOLIDAY", "TICKETS", "BILLS")
ATM_PLACES = ("HIGH ST", "SAINSBURYS", "POST OFFICE", "TESCO", "STATION RD", "MARKET SQ")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

# Transfers between a user's own current accounts (multi-N users): what each leg says. "{sort}",
# "{number}" and "{iban}" are the *other* account's; templates without them carry no identifier,
# so only the amount and the dates can pair the legs.
OWN_TRANSFER_OUT = (
    "TFR TO {sort} {number}",
    "TO A/C {number} MOBILE TFR",
    "MOBILE BANKING TRANSFER",
    "FASTER PAYMENT OUT",
)
OWN_TRANSFER_IN = (
    "TFR FROM {sort} {number}",
    "FROM A/C {number}",
    "FASTER PAYMENT RECEIVED",
    "BANK TRANSFER IN",
)

# Planted on purpose (multi-N users with two or more current accounts): on the 15th, the same
# £9.99 leaves two different accounts for two unrelated subscriptions, and £9.99 comes back to a
# third as a refund. Nothing here is a transfer: a matcher that pairs by amount alone is fooled.
PLANTED_SAME_AMOUNT = (
    ("AUDIBLE UK ADBL.CO/PYMT", "Audible", "subscriptions", "streaming"),
    ("NOW TV SUBSCRIPTION", "NOW", "subscriptions", "streaming"),
)
PLANTED_REFUND = ("APPLE.COM/BILL REFUND", "Apple", "refunds", "refund")
PLANTED_PENCE = 999
