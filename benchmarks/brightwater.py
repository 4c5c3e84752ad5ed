"""A seeded generator of Brightwater Supply Co. graphs, from the workspace size to millions of triples.

    python -m benchmarks.brightwater --seed 7 --format turtle --out knowledge_graph/data/brightwater.ttl
    python -m benchmarks.brightwater --triples 1000000 --seed 7 --out /tmp/graph.nt

Run it from the repository root (`python benchmarks/brightwater.py ...` works too: the standard
library is all it imports). It lives outside the `engine` package, which never imports it: the
engine reads the committed `knowledge_graph/data/` like any other data.

N-Triples are written line by line (nothing is held in memory); Turtle is written entity by
entity, also streaming. Scale 1.0 is the committed workspace data; every count grows with
`scale`, so larger graphs keep the same shape and the same exceptions in the same
proportions. Only `random.Random(seed)` is used, and the reference date is fixed
(`REFERENCE_DATE`, 2026-11-01), never today, so the output is byte-for-byte reproducible.

Which entity is an exception (a blocked vendor, a duplicate invoice, a sanctioned owner...)
depends on its index only, never on the seed: `knowledge_graph/README.md` lists the notable
IRIs of the scale-1.0 graph. The seed changes names, amounts, dates and quantities.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import math
import random
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

BW = "https://brightwater.example/ontology#"
BWD = "https://brightwater.example/id/"
XSD = "http://www.w3.org/2001/XMLSchema#"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
REFERENCE_DATE = dt.date(2026, 11, 1)

REGIONS = ("NA-EAST", "NA-WEST", "EMEA-NORTH", "EMEA-SOUTH", "APAC", "LATAM")
TIERS = ("platinum", "gold", "silver", "bronze")
LEAD_SOURCES = ("web", "referral", "trade_show", "partner", "cold_call")
VENDOR_STATUSES = ("approved", "pending", "blocked", "suspended")
INVOICE_STATUSES = ("received", "approved", "paid", "on_hold", "rejected")
PO_STATUSES = ("open", "closed", "cancelled")
SO_STATUSES = ("draft", "confirmed", "shipped", "cancelled")
ROLES = ("ceo", "cfo", "vp", "director", "manager", "ap_clerk", "buyer", "sales_rep", "account_manager", "analyst")

# Approval limits in cents, growing up the chain; the CEO's is "unlimited" (a large number).
LIMITS = {"ceo": 100_000_000_00, "cfo": 1_000_000_00, "vp": 250_000_00, "director": 50_000_00,
          "manager": 10_000_00, "ap_clerk": 1_000_00, "buyer": 1_000_00}

# --------------------------------------------------------------------------------------------
# Index patterns: which entities are exceptions. Vendors repeat a pattern of 60, legal
# entities one of 30 (one block of owners per block of vendors), invoices the modular rules
# in `_invoice_kind`, customers and leads the rules in their generators.
VENDOR_BLOCK = 60
OWNER_BLOCK = 30
V_BLOCKED = (3, 31)
V_PENDING = (7, 44)
V_SUSPENDED = (19,)
V_NEW = (5, 23, 44, 52)            # onboarded in the 30 days before the reference date
V_BANK_CHANGED = (9, 27, 56)       # bank account changed in the 30 days before the reference date
V_NO_INVOICES = (44,)              # pending and new: nothing billed yet
V_FOREIGN = {16: "DE", 40: "GB"}   # the vendors that bill in EUR / GBP; all others bill in USD
# vendor position -> owner positions (1-based, in the vendor's owner block)
V_SANCTION_LINKS = {4: (1,), 10: (2,), 14: (3,), 37: (7, 6), 45: (4,)}
OWNER_SANCTIONED = (1, 5, 20)
OWNER_CHAIN = {2: 1, 3: 2, 4: 3, 6: 5}   # owner -> its owner: 4 -> 3 -> 2 -> 1 (sanctioned), 6 -> 5
CLEAN_OWNERS = tuple(list(range(7, 20)) + list(range(21, 31)))
DUPLICATE_EVERY = 64               # invoice j with j % 64 == 1 is billed twice

# --------------------------------------------------------------------------------------------
# Word lists (ASCII mostly; a few names exercise escaping and UTF-8).
FIRST = ["Ava", "Liam", "Maya", "Noah", "Zoe", "Ethan", "Chloe", "Lucas", "Priya", "Omar", "Hannah", "Mateo",
         "Grace", "Daniel", "Sofia", "Jamal", "Elena", "Kenji", "Amara", "Victor", "Leah", "Samuel", "Nina",
         "Diego", "Ingrid", "Tariq", "Rosa", "Felix", "Aisha", "Marcus", "Yuki", "Oscar", "Clara", "Ravi",
         "Helen", "Tomas", "Fatima", "Jonas", "Mei", "Andre", "Lucia", "Pavel", "Irene", "Kofi", "Beatriz",
         "Henrik", "Layla", "Connor", "Anika", "Rafael"]
LAST = ["Okafor", "Lindqvist", "Patel", "Nguyen", "Garcia", "Schneider", "Kowalski", "O'Neill", "Tanaka",
        "Haddad", "Moreau", "Bianchi", "Novak", "Silva", "Jensen", "Murphy", "Fischer", "Rossi", "Kim", "Singh",
        "Walker", "Ibrahim", "Costa", "Andersen", "Dubois", "Hughes", "Yamamoto", "Mensah", "Petrov", "Reyes",
        "Brennan", "Sato", "Larsen", "Alvarez", "Chen", "Mbeki", "Horvat", "Nakamura", "Duarte", "Kaur",
        "Becker", "Laine", "Vargas", "Osei", "Bauer", "Núñez", "Whitfield", "Quinn", "Abbott", "Farrell"]
PLACES = ["Harbor", "Summit", "Cedar", "Granite", "Riverside", "Northgate", "Bluewater", "Ironwood", "Pinecrest",
          "Lakeshore", "Redstone", "Silverline", "Oakridge", "Westfield", "Eastbrook", "Highland", "Prairie",
          "Coastal", "Maple", "Stonebridge", "Brookside", "Fairview", "Kestrel", "Meridian", "Orchard", "Pioneer",
          "Quarry", "Ridgeway", "Sable", "Tidewater", "Union", "Valley", "Willow", "Yardley", "Aspen", "Birch",
          "Copper", "Delta", "Falcon", "Juniper"]
TRADES = ["Fabrication", "Manufacturing", "Builders", "Health", "Logistics", "Foods", "Motors", "Plastics",
          "Energy", "Labs", "Retail", "Hospitality", "Construction", "Printing", "Textiles", "Robotics", "Dental",
          "Clinics", "Schools", "Hotels", "Marine", "Aerospace", "Metals", "Electronics", "Pharma", "Farms",
          "Brewing", "Furniture", "Automotive", "Utilities"]
COMPANY_SUFFIX = ["Inc.", "LLC", "Corp.", "Group", "Ltd", "Co."]
HOLDING_WORDS = ["Holdings", "Capital", "Investments", "Partners", "Trust", "Ventures", "Group"]
CATEGORIES = {  # category: (sku code, vendor words, items, specs, unit cost range in dollars)
    "fasteners": ("FAS", ["Fasteners", "Bolt & Nut", "Hardware"],
                  ["Hex Bolt", "Wood Screw", "Machine Screw", "Flat Washer", "Lock Nut", "Wall Anchor", "Blind Rivet"],
                  ["M6", "M8", "M10", "1/4 in", "3/8 in", "box of 100"], (0.2, 25)),
    "safety": ("SAF", ["Safety", "Protective", "Workwear"],
               ["Nitrile Gloves", "Safety Glasses", "Hard Hat", "Hi-Vis Vest", "Ear Defenders", "First Aid Kit"],
               ["standard", "pro", "case of 12", "EN 166", "ANSI Z87"], (3, 180)),
    "office": ("OFF", ["Office Supply", "Paper", "Stationers"],
               ["Copy Paper", "Ballpoint Pens", "Binder", "Desk Chair", "Whiteboard", "Toner Cartridge"],
               ["A4", "Letter", "pack of 10", "black", "ergonomic"], (2, 400)),
    "packaging": ("PKG", ["Packaging", "Containers", "Box"],
                  ["Corrugated Box", "Stretch Film", "Packing Tape", "Bubble Wrap", "Pallet", "Mailer Bag"],
                  ["small", "medium", "large", "roll", "bundle of 25"], (0.5, 90)),
    "tools": ("TLS", ["Tool", "Machinery", "Equipment"],
              ["Cordless Drill", "Torque Wrench", "Socket Set", "Angle Grinder", "Tape Measure", "Bench Vise"],
              ["18 V", "1/2 in drive", "metric", "heavy duty", "compact"], (8, 900)),
    "janitorial": ("JAN", ["Janitorial", "Cleaning", "Sanitation"],
                   ["Floor Cleaner", "Paper Towels", "Trash Bags", "Hand Soap", "Mop Kit", "Disinfectant Wipes"],
                   ["5 L", "case of 6", "industrial", "refill", "unscented"], (3, 120)),
    "electrical": ("ELE", ["Electric", "Wire & Cable", "Lighting"],
                   ["LED Panel", "Extension Cord", "Cable Ties", "Circuit Breaker", "Work Light", "Junction Box"],
                   ["600x600", "10 m", "16 A", "IP65", "pack of 100"], (1, 600)),
}
CATEGORY_NAMES = list(CATEGORIES)
INDUSTRIES = ["manufacturing", "construction", "healthcare", "hospitality", "education", "logistics",
              "retail", "energy", "government"]
REGION_COUNTRIES = {"NA-EAST": ["US", "US", "CA"], "NA-WEST": ["US", "US", "CA"],
                    "EMEA-NORTH": ["GB", "DE", "NL", "SE", "DK", "IE"], "EMEA-SOUTH": ["FR", "ES", "IT", "PT", "GR"],
                    "APAC": ["JP", "AU", "SG", "KR", "IN", "NZ"], "LATAM": ["BR", "MX", "AR", "CL", "CO"]}
VENDOR_COUNTRIES = ["US"] * 8 + ["CA", "MX"]
CURRENCY = {"DE": "EUR", "GB": "GBP"}
OWNER_COUNTRIES = ["US", "GB", "NL", "LU", "CY", "AE", "SG", "HK", "PA", "CH", "KY", "VG"]
COLORS = ["black", "grey", "blue", "red", "yellow", "green", "white"]
SIZES = ["S", "M", "L", "XL", "one size"]
LEAD_SUFFIX = ["Co", "Works", "Partners", "Systems"]
FREE_MAIL = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"]

# The organisation: the fixed top, people reporting directly to directors, and teams (a manager
# and staff) that are replicated `round(scale)` times in bigger graphs.
DEPARTMENTS = [  # code, name, cost center, parent
    ("EXEC", "Executive Office", "CC-1000", None), ("FIN", "Finance", "CC-1100", "EXEC"),
    ("AP", "Accounts Payable", "CC-1110", "FIN"), ("PROC", "Procurement", "CC-1200", "EXEC"),
    ("OPS", "Operations", "CC-1300", "EXEC"), ("LOG", "Logistics", "CC-1310", "OPS"),
    ("SALES", "Sales", "CC-1400", "EXEC"), ("MKT", "Marketing", "CC-1500", "EXEC"),
    ("IT", "Information Technology", "CC-1600", "EXEC"), ("HR", "People", "CC-1700", "EXEC"),
]
TOP = [  # role, title, department, manager (index into TOP)
    ("ceo", "Chief Executive Officer", "EXEC", None), ("cfo", "Chief Financial Officer", "FIN", 0),
    ("vp", "VP Operations", "OPS", 0), ("vp", "VP Sales", "SALES", 0), ("vp", "VP Procurement", "PROC", 0),
    ("director", "Controller", "FIN", 1), ("director", "Director of IT", "IT", 1),
    ("director", "Director of People", "HR", 1), ("director", "Director of Procurement", "PROC", 4),
    ("director", "Director of Operations", "OPS", 2), ("director", "Director of Logistics", "LOG", 2),
    ("director", "Director of Sales, North America", "SALES", 3),
    ("director", "Director of Sales, International", "SALES", 3), ("director", "Director of Marketing", "MKT", 3),
]
DEPARTMENT_HEAD_TOP = {"EXEC": 0, "FIN": 1, "PROC": 4, "OPS": 2, "LOG": 10, "SALES": 3, "MKT": 13, "IT": 6, "HR": 7}
DIRECT_STAFF = [  # role, title, department, director (index into TOP)
    ("analyst", "Financial Analyst", "FIN", 5), ("analyst", "HR Generalist", "HR", 7),
    ("analyst", "Marketing Analyst", "MKT", 13),
]
_SR, _AM = "sales_rep", "account_manager"
# manager title, department, director (index into TOP), staff: (role, title, territory, active)
TEAMS: list[tuple[str, str, int, list[tuple[str, str, str | None, bool]]]] = [
    ("Accounts Payable Manager", "AP", 5, [("ap_clerk", "Accounts Payable Clerk", None, True)] * 3),
    ("Procurement Manager", "PROC", 8, [("buyer", "Buyer", None, True), ("buyer", "Senior Buyer", None, True)]),
    ("Procurement Manager", "PROC", 8, [("buyer", "Buyer", None, True), ("buyer", "Buyer", None, False)]),
    ("Operations Manager", "OPS", 9, [("analyst", "Operations Analyst", None, True)]),
    ("Warehouse Manager", "LOG", 10, [("analyst", "Receiving Analyst", None, True)]),
    ("IT Manager", "IT", 6, [("analyst", "Systems Analyst", None, True)]),
    ("Sales Manager, NA East", "SALES", 11, [(_SR, "Sales Representative", "NA-EAST", True),
                                             (_SR, "Sales Representative", "NA-EAST", True),
                                             (_AM, "Account Manager", "NA-EAST", True)]),
    ("Sales Manager, NA West", "SALES", 11, [(_SR, "Sales Representative", "NA-WEST", True),
                                             (_SR, "Sales Representative", "NA-WEST", True),
                                             (_AM, "Account Manager", "NA-WEST", True)]),
    ("Sales Manager, EMEA", "SALES", 12, [(_SR, "Sales Representative", "EMEA-NORTH", True),
                                          (_SR, "Sales Representative", "EMEA-SOUTH", True),
                                          (_AM, "Account Manager", "EMEA-NORTH", True)]),
    # LATAM's only sales rep has left (inactive): LATAM leads have no active rep.
    ("Sales Manager, APAC & LATAM", "SALES", 12, [(_SR, "Sales Representative", "APAC", True),
                                                  (_SR, "Sales Representative", "LATAM", False),
                                                  (_AM, "Account Manager", "APAC", True),
                                                  (_AM, "Account Manager", "LATAM", True)]),
]


# --------------------------------------------------------------------------------------------
# N-Triples terms.

def _esc(s: str) -> str:
    if "\\" in s or '"' in s or "\n" in s or "\r" in s:
        s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return s


def node(local: str) -> str:
    """The N-Triples term of a data IRI, `bwd:<local>`."""
    return f"<{BWD}{local}>"


def s_(v: str) -> str:
    return f'"{_esc(v)}"'


def i_(v: int) -> str:
    return f'"{v}"^^<{XSD}integer>'


def d_(hundredths: int) -> str:
    """An xsd:decimal from an integer number of hundredths (cents), always with two decimals."""
    sign = "-" if hundredths < 0 else ""
    h = abs(hundredths)
    return f'"{sign}{h // 100}.{h % 100:02d}"^^<{XSD}decimal>'


def b_(v: bool) -> str:
    return f'"{"true" if v else "false"}"^^<{XSD}boolean>'


def t_(v: dt.date) -> str:
    return f'"{v.isoformat()}"^^<{XSD}date>'


def _ascii(name: str) -> str:
    """`Núñez` -> `nunez`, `O'Neill 2` -> `oneill2`: for e-mail addresses and domains."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _day(back: int) -> dt.date:
    return REFERENCE_DATE - dt.timedelta(days=back)


Props = list[tuple[str, str]]  # [(property local name, object term)]
Block = tuple[str, str, Props]  # (subject local name, class local name, Props)
Record = dict[str, Any]  # a vendor or an invoice as the generator builds it (mixed values)


@dataclass
class _Emp:
    id: str
    role: str
    title: str
    dept: str
    manager: str | None
    territory: str | None = None
    active: bool = True


@dataclass
class _Product:
    id: str
    category: str
    cost: int  # cents
    list_price: int


@dataclass
class _Customer:
    id: str
    name: str
    base: str
    domain: str
    region: str
    country: str
    industry: str
    tier: str
    since: dt.date
    owner: str | None = None


@dataclass
class _Counts:
    vendors: int
    invoices: int
    customers: int
    sales_orders: int
    leads: int
    products: int
    teams: int
    owners: int = field(init=False)

    def __post_init__(self) -> None:
        self.owners = OWNER_BLOCK * math.ceil(self.vendors / VENDOR_BLOCK)


def counts(scale: float) -> _Counts:
    """Entity counts at `scale` (1.0: 60 vendors, 320 invoices, 160 customers, ...)."""
    if scale <= 0:
        raise ValueError("scale must be positive")

    def n(base: int, floor: int) -> int:
        return max(floor, round(base * scale))

    return _Counts(vendors=n(60, 12), invoices=n(320, 40), customers=n(160, 20), sales_orders=n(220, 24),
                   leads=n(80, 12), products=n(120, 21), teams=max(1, round(scale)))


def _invoice_kind(j: int) -> str:
    """The deliberate exception of base invoice `j` (0-based), or `clean`."""
    if j % 20 == 8:
        return "no_po"
    if j % 20 == 12:
        return "short_receipt"      # billed quantity exceeds what was received
    if j % 20 == 16:
        return "price_mismatch"     # unit price differs from the PO line
    if j % 40 == 2:
        return "po_closed"
    if j % 40 == 22:
        return "over_open_amount"   # invoice larger than the PO's open amount
    if j % 40 == 34:
        return "extra_line"         # one line without a PO line
    return "clean"


def _invoice_status(j: int) -> str:
    if j % 13 == 8:
        return "paid"
    if j % 17 == 5:
        return "on_hold"
    if j % 31 == 7:
        return "rejected"
    if j % 5 == 1:
        return "approved"
    return "received"


def _invoice_band(j: int) -> tuple[int, int]:
    """Target invoice amount range in dollars."""
    if j % 100 == 59:
        return 1_100_000, 2_400_000   # above the CFO's limit
    if j % 30 == 9:
        return 260_000, 900_000       # above a VP's limit
    r = j % 10
    if r in (0, 3, 6):
        return 120, 950               # small: auto-approval territory
    if r in (1, 4, 8):
        return 1_200, 9_500
    if r in (2, 7):
        return 10_000, 48_000
    if r == 5:
        return 52_000, 240_000
    return 1_000, 9_000


class _Gen:
    def __init__(self, seed: int, scale: float):
        self.rng = random.Random(seed)  # reproducible sample data, not a secret
        self.c = counts(scale)
        self.used_names: set[str] = set()

    # -- helpers ---------------------------------------------------------------------------
    def unique(self, make: Callable[[], str]) -> str:
        """A name from `make()` not used before (a number is appended if none comes up)."""
        for _ in range(12):
            v = make()
            if v not in self.used_names:
                self.used_names.add(v)
                return v
        k = 2
        base = make()
        while f"{base} {k}" in self.used_names:
            k += 1
        self.used_names.add(f"{base} {k}")
        return f"{base} {k}"

    def money(self, lo: float, hi: float) -> int:
        return self.rng.randint(int(lo * 100), int(hi * 100))

    # -- the graph, entity by entity --------------------------------------------------------
    def blocks(self) -> Iterator[Block]:
        yield from self.organisation()
        yield from self.owners_and_vendors()
        yield from self.products()
        yield from self.purchase_to_pay()
        yield from self.customers()
        yield from self.sales_orders()
        yield from self.leads()

    def organisation(self) -> Iterator[Block]:
        rng = self.rng
        emps: list[_Emp] = []

        def add(role: str, title: str, dept: str, manager: str | None, territory: str | None = None,
                active: bool = True) -> _Emp:
            e = _Emp(f"EMP-{len(emps) + 1:03d}", role, title, dept, manager, territory, active)
            emps.append(e)
            return e

        top: list[_Emp] = []
        for role, title, dept, mgr in TOP:
            top.append(add(role, title, dept, top[mgr].id if mgr is not None else None))
        for role, title, dept, director in DIRECT_STAFF:
            add(role, title, dept, top[director].id)
        team_managers: list[_Emp] = []
        for _copy in range(self.c.teams):
            for mtitle, dept, director, staff in TEAMS:
                m = add("manager", mtitle, dept, top[director].id)
                team_managers.append(m)
                for role, title, territory, active in staff:
                    add(role, title, dept, m.id, territory, active)
        self.employees = emps
        self.by_role: dict[str, list[_Emp]] = {}
        for e in emps:
            self.by_role.setdefault(e.role, []).append(e)
        self.buyers = [e.id for e in self.by_role["buyer"]]
        self.requesters = [e for e in emps if e.role == "buyer"
                           or (e.dept in ("OPS", "LOG", "IT") and e.role in ("analyst", "manager"))]
        self.receivers = [e.id for e in emps if e.dept in ("LOG", "OPS") and e.role in ("analyst", "manager")]
        self.reps = {r: [e.id for e in emps if e.role == _SR and e.territory == r and e.active] for r in REGIONS}
        self.ams = {r: [e.id for e in emps if e.role == _AM and e.territory == r and e.active] for r in REGIONS}
        heads = {code: top[i].id for code, i in DEPARTMENT_HEAD_TOP.items()}
        heads["AP"] = team_managers[0].id
        for code, name, cc, parent in DEPARTMENTS:
            props: Props = [("name", s_(name)), ("code", s_(code)), ("cost_center", s_(cc)),
                            ("head", node(heads[code]))]
            if parent:
                props.append(("parent", node(f"DEPT-{parent}")))
            yield f"DEPT-{code}", "Department", props
        seniority = {"ceo": 4000, "cfo": 3500, "vp": 3000, "director": 2400, "manager": 1800}
        for e in emps:
            first, last = self.unique(lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}").split(" ", 1)
            email = f"{_ascii(first)}.{_ascii(last)}@brightwater.example"
            hired = _day(rng.randint(60, seniority.get(e.role, 1500)))
            props = [("name", s_(f"{first} {last}")), ("email", s_(email)), ("title", s_(e.title)),
                     ("role", s_(e.role)), ("department", node(f"DEPT-{e.dept}")),
                     ("approval_limit", d_(LIMITS.get(e.role, 0))), ("active", b_(e.active)),
                     ("hired_on", t_(hired))]
            if e.manager:
                props.append(("reports_to", node(e.manager)))
            if e.territory:
                props.append(("territory", s_(e.territory)))
            yield e.id, "Employee", props

    def owners_and_vendors(self) -> Iterator[Block]:
        rng = self.rng
        for k in range(1, self.c.owners + 1):
            pos = (k - 1) % OWNER_BLOCK + 1
            base = k - pos
            name = self.unique(lambda: f"{rng.choice(PLACES)} {rng.choice(HOLDING_WORDS)} "
                                       f"{rng.choice(['Ltd', 'S.A.', 'AG', 'B.V.', 'Limited', 'PLC'])}")
            props: Props = [("name", s_(name)), ("country", s_(rng.choice(OWNER_COUNTRIES))),
                            ("sanctioned", b_(pos in OWNER_SANCTIONED))]
            owner = OWNER_CHAIN.get(pos)
            if owner is None and ((7 <= pos <= 18 and pos % 3 == 0) or (21 <= pos <= 29 and pos % 4 == 1)):
                owner = pos + 1
            if owner:
                props.append(("owned_by", node(f"LE-{base + owner:04d}")))
            yield f"LE-{k:04d}", "LegalEntity", props

        self.vendors: list[Record] = []
        self.vendor_seq: dict[str, int] = {}
        for i in range(self.c.vendors):
            p = i % VENDOR_BLOCK
            obase = (i // VENDOR_BLOCK) * OWNER_BLOCK
            vid = f"V-{1001 + i}"
            cat = rng.choice(CATEGORY_NAMES)
            words = CATEGORIES[cat][1]
            # `unique` calls the lambda at once, in this iteration
            name = self.unique(
                lambda: f"{rng.choice(PLACES)} {rng.choice(words)} {rng.choice(COMPANY_SUFFIX)}")  # noqa: B023
            status = ("blocked" if p in V_BLOCKED else "pending" if p in V_PENDING
                      else "suspended" if p in V_SUSPENDED else "approved")
            country = V_FOREIGN.get(p) or rng.choice(VENDOR_COUNTRIES)
            owners = V_SANCTION_LINKS.get(p)
            if owners is None and p % 4 == 0:
                owners = (rng.choice(CLEAN_OWNERS),)
            elif owners is None and p % 12 == 6:
                owners = tuple(rng.sample(CLEAN_OWNERS, 2))
            risk = rng.choice([1, 1, 2, 2, 2, 3, 3, 4])
            if status != "approved" or p in V_SANCTION_LINKS:
                risk = rng.choice([4, 5])
            terms = rng.choice([15, 30, 30, 30, 45, 60])
            if p in V_NEW:
                onboarded = _day(rng.randint(2, 27))
            elif status == "pending":  # onboarding started a while ago and is not complete
                onboarded = _day(rng.randint(35, 80))
            else:
                onboarded = _day(rng.randint(90, 3650))
            props = [("name", s_(name)), ("vendor_id", s_(str(1001 + i))), ("country", s_(country)),
                            ("sanctioned", b_(False)), ("status", s_(status)), ("category", s_(cat)),
                            ("onboarded_on", t_(onboarded)), ("risk_rating", i_(risk)),
                            ("payment_terms_days", i_(terms)), ("buyer", node(self.buyers[i % len(self.buyers)]))]
            if p in V_BANK_CHANGED:
                props.append(("bank_account_changed_on", t_(_day(rng.randint(1, 20)))))
            elif p % 8 == 1:
                props.append(("bank_account_changed_on", t_(_day(rng.randint(120, 1500)))))
            for o in owners or ():
                props.append(("owned_by", node(f"LE-{obase + o:04d}")))
            initials = "".join(w[0] for w in name.split()[:2]).upper()
            self.vendors.append({"id": vid, "category": cat, "terms": terms, "onboarded": onboarded,
                                 "currency": CURRENCY.get(country, "USD"), "prefix": initials if i % 3 else ""})
            self.vendor_seq[vid] = rng.randint(1000, 8999)
            yield vid, "Vendor", props

    def products(self) -> Iterator[Block]:
        rng = self.rng
        self.product_list: list[_Product] = []
        self.products_by_cat: dict[str, list[_Product]] = {c: [] for c in CATEGORY_NAMES}
        for i in range(self.c.products):
            cat = CATEGORY_NAMES[i % len(CATEGORY_NAMES)]
            code, _words, items, specs, (lo, hi) = CATEGORIES[cat]
            pid = f"PRD-{i + 1:04d}"
            sku = f"{code}-{i + 1:05d}"
            cost = self.money(lo, hi)
            price = cost * rng.randint(130, 180) // 100
            available = i % 11 != 7
            prod = _Product(pid, cat, cost, price)
            self.product_list.append(prod)
            self.products_by_cat[cat].append(prod)
            variants = [f"VAR-{i + 1:04d}-{v + 1}" for v in range(1 + i % 3)]
            name = f"{rng.choice(PLACES)} {rng.choice(items)}, {rng.choice(specs)}"
            props: Props = [("sku", s_(sku)), ("name", s_(name)),
                            ("category", s_(cat)), ("list_price", d_(price)), ("unit_cost", d_(cost)),
                            ("available", b_(available)),
                            ("stock_quantity", i_(rng.randint(5, 2500) if available else 0))]
            props += [("variants", node(v)) for v in variants]
            yield pid, "Product", props
            colors = rng.sample(COLORS, len(variants))
            for v, vid in enumerate(variants):
                yield vid, "ProductVariant", [
                    ("sku", s_(f"{sku}-{colors[v][:2].upper()}{v + 1}")), ("color", s_(colors[v])),
                    ("size", s_(SIZES[(i + v) % len(SIZES)])), ("price", d_(price + price * 5 * v // 100)),
                    ("available", b_(available and (i + v) % 7 != 3))]

    # -- purchase to pay --------------------------------------------------------------------
    def _lines(self, vendor: Record, lo: int, hi: int, n: int) -> list[tuple[_Product, int, int]]:
        """`n` lines (product, quantity, unit price in cents) totalling at most about `lo..hi` dollars."""
        rng = self.rng
        target = self.money(lo, hi)
        weights = [rng.uniform(0.5, 1.5) for _ in range(n)]
        out = []
        for w in weights:
            line_target = max(100, int(target * w / sum(weights)))
            cands = [p for p in self.products_by_cat[vendor["category"]] if p.cost <= line_target]
            if not cands:
                cands = [p for p in self.product_list if p.cost <= line_target] or \
                    [min(self.product_list, key=lambda p: p.cost)]
            prod = rng.choice(cands)
            price = max(1, prod.cost * rng.randint(95, 108) // 100)
            qty = max(1, line_target // price)
            out.append((prod, qty, price))
        return out

    def purchase_to_pay(self) -> Iterator[Block]:
        rng = self.rng
        gr_no = 7001
        billing = [v for i, v in enumerate(self.vendors) if i % VENDOR_BLOCK not in V_NO_INVOICES]
        nv = len(billing)
        duplicates: list[tuple[int, Record]] = []
        for j in range(self.c.invoices):
            kind = _invoice_kind(j)
            status = _invoice_status(j)
            vendor = billing[j % nv]
            back = {"received": (1, 40), "approved": (5, 60), "paid": (35, 120), "on_hold": (5, 45),
                    "rejected": (10, 90)}[status]
            inv_date = _day(rng.randint(*back))
            order_date = inv_date - dt.timedelta(days=rng.randint(7, 45))
            inv = f"INV-{10001 + j}"
            n_lines = 1 + rng.randrange(5)
            if kind == "extra_line":
                n_lines = min(n_lines, 4)
            lo, hi = _invoice_band(j)
            lines = self._lines(vendor, lo, hi, n_lines)
            requester = self.requesters[j % len(self.requesters)]
            po_vendor = vendor
            if kind == "no_po":  # non-PO spend; this PO number is an open order not yet invoiced
                po_vendor = billing[(j + 7) % nv]
                lines_po = self._lines(po_vendor, 500, 20_000, 1 + rng.randrange(3))
            else:
                lines_po = lines
            # nothing is ordered from a vendor before it was onboarded
            earliest = max(vendor["onboarded"], po_vendor["onboarded"])
            if order_date < earliest:
                order_date = earliest
                inv_date = min(REFERENCE_DATE, max(inv_date, order_date + dt.timedelta(days=2)))
            po = f"PO-{5001 + j}"
            # the purchase order, its lines and goods receipts
            po_total = sum(q * p for _, q, p in lines_po)
            po_status, open_amount = "open", po_total
            if kind == "po_closed":
                po_status, open_amount = "closed", 0
            elif kind == "over_open_amount":
                open_amount = po_total // 2
            elif kind == "no_po" and j % 40 == 28:
                po_status = "cancelled"
            pol_ids = [f"POL-{5001 + j}-{k + 1}" for k in range(len(lines_po))]
            yield po, "PurchaseOrder", [
                ("po_number", s_(po)), ("vendor", node(po_vendor["id"])), ("requester", node(requester.id)),
                ("department", node(f"DEPT-{requester.dept}")), ("total_amount", d_(po_total)),
                ("open_amount", d_(open_amount)), ("status", s_(po_status)), ("order_date", t_(order_date)),
                *[("po_lines", node(x)) for x in pol_ids]]
            for k, ((prod, qty, price), pol) in enumerate(zip(lines_po, pol_ids, strict=True)):
                if kind == "no_po":
                    received = [] if po_status == "cancelled" or k % 2 else [qty]
                elif kind == "short_receipt" and k == 0:
                    short = max(1, qty // 4)
                    received = [qty - short] if qty > short else []
                elif qty >= 2 and rng.random() < 0.25:
                    received = [qty // 2, qty - qty // 2]
                else:
                    received = [qty]
                grs = [f"GR-{gr_no + x}" for x in range(len(received))]
                gr_no += len(received)
                yield pol, "PurchaseOrderLine", [
                    ("product", node(prod.id)), ("quantity", d_(qty * 100)), ("unit_price", d_(price)),
                    ("amount", d_(qty * price)), *[("receipts", node(g)) for g in grs]]
                span = max(1, (inv_date - order_date).days - 1)
                for g, q in zip(grs, received, strict=True):
                    yield g, "GoodsReceipt", [
                        ("po_line", node(pol)), ("quantity", d_(q * 100)),
                        ("received_on", t_(order_date + dt.timedelta(days=rng.randint(1, span)))),
                        ("received_by", node(rng.choice(self.receivers)))]
            # the invoice and its lines
            inv_lines = []
            for k, (prod, qty, price) in enumerate(lines):
                if kind == "price_mismatch" and k == 0:
                    price = max(price + 2, price * 106 // 100)
                inv_lines.append((prod, qty, price, None if kind == "no_po" else pol_ids[k]))
            if kind == "extra_line":
                prod = rng.choice(self.products_by_cat[vendor["category"]])
                inv_lines.append((prod, rng.randint(1, 5), prod.cost, None))
            seq = self.vendor_seq[vendor["id"]] = self.vendor_seq[vendor["id"]] + rng.randint(1, 40)
            number = f"{vendor['prefix']}-{seq}" if vendor["prefix"] else f"{seq:06d}"
            record: Record = {"vendor": vendor, "number": number, "po": None if kind == "no_po" else po,
                      "lines": inv_lines, "date": inv_date}
            yield from self._invoice(inv, record, status)
            if j % DUPLICATE_EVERY == 1:
                duplicates.append((j, record))
        for k, (_j, record) in enumerate(duplicates):
            again = dict(record, date=min(REFERENCE_DATE - dt.timedelta(days=1),
                                          record["date"] + dt.timedelta(days=rng.randint(3, 20))))
            yield from self._invoice(f"INV-{10001 + self.c.invoices + k}", again, "received")

    def _invoice(self, inv: str, r: Record, status: str) -> Iterator[Block]:
        ids = [f"INVL-{inv[4:]}-{k + 1}" for k in range(len(r["lines"]))]
        total = sum(q * p for _, q, p, _ in r["lines"])
        props: Props = [("invoice_number", s_(r["number"])), ("vendor", node(r["vendor"]["id"])),
                        ("amount", d_(total)), ("currency", s_(r["vendor"]["currency"])),
                        ("invoice_date", t_(r["date"])),
                        ("due_date", t_(r["date"] + dt.timedelta(days=r["vendor"]["terms"]))),
                        ("status", s_(status)), *[("invoice_lines", node(x)) for x in ids]]
        if r["po"]:
            props.append(("purchase_order", node(r["po"])))
        yield inv, "Invoice", props
        for lid, (prod, qty, price, pol) in zip(ids, r["lines"], strict=True):
            lp: Props = [("product", node(prod.id)), ("quantity", d_(qty * 100)), ("unit_price", d_(price)),
                         ("amount", d_(qty * price))]
            if pol:
                lp.append(("po_line", node(pol)))
            yield lid, "InvoiceLine", lp

    # -- customers, sales, leads ------------------------------------------------------------
    def customers(self) -> Iterator[Block]:
        rng = self.rng
        self.customer_list: list[_Customer] = []
        tier_of = ["platinum", "gold", "gold", "silver", "silver", "silver", "bronze", "bronze", "bronze", "bronze"]
        limits = {"platinum": (750_000, 2_000_000), "gold": (250_000, 750_000), "silver": (80_000, 250_000),
                  "bronze": (10_000, 80_000)}
        revenue = {"platinum": (200, 2000), "gold": (50, 400), "silver": (10, 80), "bronze": (1, 15)}  # $M
        for i in range(self.c.customers):
            cid = f"C-{2001 + i}"
            tier = tier_of[i % 10]
            region = REGIONS[(i + i // 10) % len(REGIONS)]  # every tier in every region
            base = self.unique(lambda: f"{rng.choice(PLACES)} {rng.choice(TRADES)}")
            name = f"{base} {rng.choice(COMPANY_SUFFIX)}"
            domain = base.lower().replace(" ", "-") + ".example"
            cust = _Customer(cid, name, base, domain, region, rng.choice(REGION_COUNTRIES[region]),
                             rng.choice(INDUSTRIES), tier, _day(rng.randint(30, 5000)))
            owners = self.ams[region] or self.reps[region]
            if i % 7 != 3 and owners:
                cust.owner = owners[i % len(owners)]
            self.customer_list.append(cust)
            limit = self.money(*limits[tier]) // 1000_00 * 1000_00
            balance = limit * rng.randint(0, 90) // 100
            if i % 19 == 4:  # over the credit limit
                balance = limit + limit * rng.randint(2, 30) // 100
            props: Props = [("name", s_(name)), ("tier", s_(tier)), ("country", s_(cust.country)),
                            ("region", s_(region)), ("industry", s_(cust.industry)), ("credit_limit", d_(limit)),
                            ("open_balance", d_(balance)),
                            ("customer_since", t_(cust.since)),
                            ("annual_revenue", d_(self.money(*revenue[tier]) * 1_000_000))]
            if cust.owner:
                props.append(("account_owner", node(cust.owner)))
            yield cid, "Customer", props

    def sales_orders(self) -> Iterator[Block]:
        rng = self.rng
        nc = len(self.customer_list)
        status_of = ["confirmed"] * 6 + ["draft", "shipped", "shipped", "cancelled"]
        for k in range(self.c.sales_orders):
            so = f"SO-{3001 + k}"
            cust = self.customer_list[(k * 37) % nc]
            reps = self.reps[cust.region] or self.ams[cust.region] or [e.id for e in self.by_role[_SR] if e.active]
            rep = cust.owner if cust.owner and k % 3 == 0 else reps[k % len(reps)]
            thin = k % 17 == 3  # a thin margin (about 3 to 8 %): little room for a discount
            lines: list[tuple[_Product, int, int]] = []  # product, quantity, unit price in cents
            for _ in range(1 + rng.randrange(4)):
                prod = rng.choice(self.product_list)
                if thin:
                    price = prod.cost * rng.randint(104, 108) // 100 + 1
                else:
                    price = max(prod.cost * 105 // 100 + 1, prod.list_price * rng.randint(88, 100) // 100)
                lines.append((prod, rng.randint(1, 60), price))
            target = 0
            if k % 25 == 7 or (cust.tier in ("platinum", "gold") and k % 11 == 2):  # a big order, above 250,000
                target = self.money(260_000, 600_000)
            elif k % 25 == 19 or k % 25 == 13:  # a volume order, 100,000 to 250,000
                target = self.money(110_000, 240_000)
            total = sum(q * p for _, q, p in lines)
            if total < target:
                prod0, q0, price0 = lines[0]
                lines[0] = (prod0, q0 + (target - total) // price0 + 1, price0)
            total = sum(q * p for _, q, p in lines)
            cost = sum(q * prod.cost for prod, q, _ in lines)
            margin = (total - cost) * 10_000 // total  # hundredths of a percent
            ids = [f"SOL-{3001 + k}-{x + 1}" for x in range(len(lines))]
            yield so, "SalesOrder", [
                ("order_number", s_(so)), ("customer", node(cust.id)), ("sales_rep", node(rep)),
                ("order_date", t_(max(cust.since, _day(rng.randint(0, 90))))),
                ("status", s_(status_of[k % 10])),
                ("total_amount", d_(total)), ("margin_percent", d_(margin)),
                *[("order_lines", node(x)) for x in ids]]
            for sid, (prod, q, p) in zip(ids, lines, strict=True):
                yield sid, "SalesOrderLine", [("product", node(prod.id)), ("quantity", d_(q * 100)),
                                              ("unit_price", d_(p)), ("amount", d_(q * p))]

    def leads(self) -> Iterator[Block]:
        rng = self.rng
        nc = len(self.customer_list)
        for m in range(self.c.leads):
            lid = f"LEAD-{4001 + m}"
            region = REGIONS[m % len(REGIONS)]
            existing = None
            if m % 7 == 3:  # the company is already a customer: same e-mail domain
                existing = self.customer_list[(m * 11 + 5) % nc]
                region = existing.region
            company = existing.base if existing else self.unique(
                lambda: f"{rng.choice(PLACES)} {rng.choice(TRADES)} {rng.choice(LEAD_SUFFIX)}")
            country = existing.country if existing else rng.choice(REGION_COUNTRIES[region])
            industry = existing.industry if existing else rng.choice(INDUSTRIES)
            junk = existing is None and m % 13 == 5
            if existing:
                domain = existing.domain
            elif junk:
                domain = FREE_MAIL[m % len(FREE_MAIL)]
                company = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            else:
                domain = company.lower().replace(" ", "-") + ".example"
            big = m % 7 == 4 and not junk  # an enterprise opportunity
            value = self.money(250_000, 900_000) if big else self.money(5_000, 200_000)
            props: Props = [("company_name", s_(company)), ("country", s_(country)), ("region", s_(region)),
                            ("industry", s_(industry)),
                            ("employee_count", i_(0 if junk else rng.randint(8, 12_000))),
                            ("estimated_value", d_(value // 100_00 * 100_00)),
                            ("source", s_(LEAD_SOURCES[m % len(LEAD_SOURCES)])), ("email_domain", s_(domain))]
            if existing:
                props.append(("existing_customer", node(existing.id)))
            yield lid, "Lead", props


# --------------------------------------------------------------------------------------------
# Public API.

_PRED_CACHE: dict[str, str] = {}


def _pred(name: str) -> str:
    p = _PRED_CACHE.get(name)
    if p is None:
        p = _PRED_CACHE[name] = f"<{BW}{name}>"
    return p


def blocks(*, seed: int = 7, scale: float = 1.0) -> Iterator[Block]:
    """The graph entity by entity: `(local name, class local name, [(property, object term), ...])`."""
    return _Gen(seed, scale).blocks()


def generate(*, seed: int = 7, scale: float = 1.0) -> Iterator[tuple[str, str, str]]:
    """The triples of one Brightwater graph, as N-Triples terms `(subject, predicate, object)`."""
    rdf_type = f"<{RDF_TYPE}>"
    for local, cls, props in _Gen(seed, scale).blocks():
        s = f"<{BWD}{local}>"
        yield s, rdf_type, f"<{BW}{cls}>"
        for p, o in props:
            yield s, _pred(p), o


def count_triples(*, seed: int = 7, scale: float = 1.0) -> int:
    """How many triples `generate(seed=seed, scale=scale)` yields (without formatting them)."""
    return sum(1 + len(props) for _, _, props in _Gen(seed, scale).blocks())


@functools.lru_cache(maxsize=8)
def _triples_per_scale(seed: int) -> tuple[float, float]:
    """A linear fit `triples = a + b * scale`, measured on two small graphs."""
    s1, s2 = 0.5, 2.0
    n1, n2 = count_triples(seed=seed, scale=s1), count_triples(seed=seed, scale=s2)
    b = (n2 - n1) / (s2 - s1)
    return n1 - b * s1, b


def scale_for(triples: int, *, seed: int = 7) -> float:
    """The scale whose graph has about `triples` triples (within a few percent from 10k up)."""
    a, b = _triples_per_scale(seed)
    scale = max(0.05, (triples - a) / b)
    if triples <= 400_000:  # one exact correction step is cheap for small graphs
        got = count_triples(seed=seed, scale=scale)
        scale = max(0.05, scale * triples / got)
    return scale


def _turtle_term(term: str) -> str:
    if term.startswith("<"):
        iri = term[1:-1]
        if iri.startswith(BWD):
            return "bwd:" + iri[len(BWD):]
        if iri.startswith(BW):
            return "bw:" + iri[len(BW):]
        return term
    if term.endswith(">") and "^^<" in term:
        lex, dtype = term.rsplit("^^<", 1)
        local = dtype[len(XSD):-1]
        if local in ("integer", "decimal", "boolean"):
            return lex[1:-1]
        return f"{lex}^^xsd:{local}"
    return term


def _write_turtle(f: TextIO, blocks_: Iterable[Block], seed: int, scale: float) -> int:
    f.write("# Brightwater Supply Co. - example knowledge graph (generated; do not edit by hand).\n"
            f"# Seed {seed}, scale {scale:g}; regenerate with `python -m benchmarks.brightwater`, "
            "see knowledge_graph/README.md.\n"
            f"# Reference date {REFERENCE_DATE.isoformat()}. Ontology: knowledge_graph/ontology/brightwater.ttl\n\n"
            f"@prefix bw: <{BW}> .\n@prefix bwd: <{BWD}> .\n@prefix xsd: <{XSD}> .\n")
    n = 0
    for local, cls, props in blocks_:
        by_pred: dict[str, list[str]] = {}
        for p, o in props:
            by_pred.setdefault(p, []).append(_turtle_term(o))
        parts = [f"\nbwd:{local} a bw:{cls}"]
        for p in sorted(by_pred):
            parts.append(f" ;\n    bw:{p} {', '.join(by_pred[p])}")
        parts.append(" .\n")
        f.write("".join(parts))
        n += 1 + len(props)
    return n


def write(path: Path | str, *, seed: int = 7, triples: int | None = None, scale: float | None = None,
          fmt: str | None = None) -> int:
    """Write one graph to `path` and return its triple count.

    `triples` picks the scale that gives about that many triples (10k to millions); `scale`
    sets it directly; neither means scale 1.0 (the workspace data). `fmt` is `nt` or
    `turtle`; by default it follows the file suffix (`.ttl` is Turtle).
    """
    path = Path(path)
    if triples is not None and scale is not None:
        raise ValueError("give `triples` or `scale`, not both")
    if scale is None:
        scale = scale_for(triples, seed=seed) if triples else 1.0
    if fmt is None:
        fmt = "turtle" if path.suffix == ".ttl" else "nt"
    if fmt in ("ttl", "turtle"):
        with path.open("w", encoding="utf-8", newline="\n") as f:
            return _write_turtle(f, _Gen(seed, scale).blocks(), seed, scale)
    if fmt not in ("nt", "ntriples", "n-triples"):
        raise ValueError(f"unknown format {fmt!r}: use nt or turtle")
    n = 0
    buf: list[str] = []
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for s, p, o in generate(seed=seed, scale=scale):
            buf.append(f"{s} {p} {o} .\n")
            if len(buf) >= 10_000:
                f.write("".join(buf))
                n += len(buf)
                buf.clear()
        f.write("".join(buf))
        n += len(buf)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.brightwater",
                                 description="Write a synthetic Brightwater Supply Co. knowledge graph.")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--triples", type=int, default=None, help="approximate number of triples (10k to millions)")
    size.add_argument("--scale", type=float, default=None, help="entity-count scale (1.0 = the workspace data)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--format", choices=["nt", "turtle"], default=None,
                    help="output format (default: from the file suffix; .ttl is Turtle)")
    ap.add_argument("--out", required=True, help="output file")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    n = write(a.out, seed=a.seed, triples=a.triples, scale=a.scale, fmt=a.format)
    print(f"wrote {n} triples to {a.out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
