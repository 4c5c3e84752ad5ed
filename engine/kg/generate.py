"""A seeded generator of Brightwater Supply Co. graphs, from the workspace size to millions of triples.

`python -m engine.kg.generate --triples 1000000 --seed 7 --out graph.nt` writes N-Triples
line by line (no graph in memory). Scale 1.0 is the committed workspace data; every
count scales with `scale`, so larger graphs keep the same shape. The reference date is
fixed (2026-11-01), never today, so the data is reproducible.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
from pathlib import Path
from typing import Iterator

BW = "https://brightwater.example/ontology#"
BWD = "https://brightwater.example/id/"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
XSD = "http://www.w3.org/2001/XMLSchema#"
REFERENCE_DATE = dt.date(2026, 11, 1)
REGIONS = ["NA-EAST", "NA-WEST", "EMEA-NORTH", "EMEA-SOUTH", "APAC", "LATAM"]
TIERS = ["platinum", "gold", "silver", "bronze"]
TRIPLES_PER_UNIT = 13_000  # triples at scale 1.0, roughly


def _lit(v: object) -> str:
    if isinstance(v, bool):
        return f'"{"true" if v else "false"}"^^<{XSD}boolean>'
    if isinstance(v, int):
        return f'"{v}"^^<{XSD}integer>'
    if isinstance(v, float):
        return f'"{v:.2f}"^^<{XSD}decimal>'
    if isinstance(v, dt.date):
        return f'"{v.isoformat()}"^^<{XSD}date>'
    s = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{s}"'


def generate(*, seed: int = 7, scale: float = 1.0) -> Iterator[str]:
    """N-Triples lines of one Brightwater graph."""
    rng = random.Random(seed)

    def n(k: int) -> int:
        return max(1, int(round(k * scale)))

    def node(local: str) -> str:
        return f"<{BWD}{local}>"

    def t(s: str, p: str, o: object) -> str:
        obj = o if isinstance(o, str) and o.startswith("<") else _lit(o)
        return f"{node(s)} <{BW}{p}> {obj} ."

    def typ(s: str, cls: str) -> str:
        return f"{node(s)} <{RDF_TYPE}> <{BW}{cls}> ."

    def day(back: int) -> dt.date:
        return REFERENCE_DATE - dt.timedelta(days=back)

    # Departments and a real reporting hierarchy with limits growing up the chain.
    depts = ["FIN", "PROC", "SALES", "OPS", "IT", "HR", "LOG", "MKT"]
    for d in depts:
        yield typ(f"DEPT-{d}", "Department")
        yield t(f"DEPT-{d}", "name", {"FIN": "Finance", "PROC": "Procurement", "SALES": "Sales", "OPS": "Operations",
                                      "IT": "IT", "HR": "People", "LOG": "Logistics", "MKT": "Marketing"}[d])
        yield t(f"DEPT-{d}", "code", d)
        yield t(f"DEPT-{d}", "cost_center", f"CC-{100 + depts.index(d)}")
    employees: list[tuple[str, str, str | None, float, str]] = []  # id, role, manager, limit, dept
    employees.append(("EMP-001", "ceo", None, 10_000_000.0, "FIN"))
    employees.append(("EMP-002", "cfo", "EMP-001", 1_000_000.0, "FIN"))
    for i, d in enumerate(["PROC", "SALES", "OPS"]):
        employees.append((f"EMP-{3 + i:03d}", "vp", "EMP-001", 250_000.0, d))
    n_emp = max(45, n(45))
    k = 6
    directors = []
    for d, vp in (("FIN", "EMP-002"), ("PROC", "EMP-003"), ("SALES", "EMP-004"), ("OPS", "EMP-005"),
                  ("LOG", "EMP-005"), ("IT", "EMP-002")):
        employees.append((f"EMP-{k:03d}", "director", vp, 50_000.0, d))
        directors.append((f"EMP-{k:03d}", d))
        k += 1
    managers = []
    for did, d in directors:
        for _ in range(2):
            employees.append((f"EMP-{k:03d}", "manager", did, 10_000.0, d))
            managers.append((f"EMP-{k:03d}", d))
            k += 1
    staff_roles = {"FIN": "ap_clerk", "PROC": "buyer", "SALES": "sales_rep", "OPS": "analyst", "LOG": "analyst",
                   "IT": "analyst"}
    while k <= n_emp:
        mid, d = managers[(k - 1) % len(managers)]
        role = staff_roles[d]
        if d == "SALES" and k % 3 == 0:
            role = "account_manager"
        employees.append((f"EMP-{k:03d}", role, mid, 1_000.0 if role in ("ap_clerk", "buyer") else 0.0, d))
        k += 1
    sales_staff = [e for e in employees if e[1] in ("sales_rep", "account_manager")]
    for i, (eid, role, mgr, limit, d) in enumerate(employees):
        yield typ(eid, "Employee")
        yield t(eid, "name", f"Employee {eid[4:]}")
        yield t(eid, "email", f"{eid.lower()}@brightwater.example")
        yield t(eid, "title", role.replace("_", " ").title())
        yield t(eid, "role", role)
        yield t(eid, "department", node(f"DEPT-{d}"))
        yield t(eid, "approval_limit", limit)
        yield t(eid, "active", not (role == "sales_rep" and i % 17 == 0))
        yield t(eid, "hired_on", day(200 + 37 * i % 3000))
        if mgr:
            yield t(eid, "reports_to", node(mgr))
    for j, e in enumerate(sales_staff):
        yield t(e[0], "territory", REGIONS[j % (len(REGIONS) - 1)])  # LATAM has no rep: escalations
    for d in depts:
        head = next((e[0] for e in employees if e[4] == d and e[1] in ("director", "vp", "cfo")), "EMP-001")
        yield t(f"DEPT-{d}", "head", node(head))
    buyers = [e[0] for e in employees if e[1] == "buyer"] or ["EMP-003"]
    requesters = [e[0] for e in employees if e[1] in ("buyer", "analyst", "ap_clerk")]

    # Owners, some sanctioned, and vendors linked to them through 1, 2 and 3 hops.
    n_owner = n(30)
    for i in range(n_owner):
        le = f"LE-{i + 1:04d}"
        yield typ(le, "LegalEntity")
        yield t(le, "name", f"Holding {i + 1}")
        yield t(le, "country", rng.choice(["US", "DE", "GB", "NL", "CY", "AE", "SG"]))
        yield t(le, "sanctioned", i % 10 == 0)
        if i % 10 in (1, 2):
            yield t(le, "owned_by", node(f"LE-{i // 10 * 10 + 1 - (1 if i % 10 == 1 else 0):04d}"))
    products = []
    for i in range(n(120)):
        pid = f"PRD-{i + 1:04d}"
        products.append(pid)
        price = round(rng.uniform(2, 900), 2)
        yield typ(pid, "Product")
        yield t(pid, "sku", f"SKU-{i + 1:05d}")
        yield t(pid, "name", f"Product {i + 1}")
        yield t(pid, "category", rng.choice(["fasteners", "safety", "office", "packaging", "tools"]))
        yield t(pid, "list_price", price)
        yield t(pid, "unit_cost", round(price * rng.uniform(0.5, 0.85), 2))
        yield t(pid, "available", i % 11 != 0)
        yield t(pid, "stock_quantity", rng.randint(0, 500))
        for v in range(1 + i % 3):
            vid = f"VAR-{i + 1:04d}-{v + 1}"
            yield typ(vid, "ProductVariant")
            yield t(pid, "variants", node(vid))
            yield t(vid, "sku", f"SKU-{i + 1:05d}-{v + 1}")
            yield t(vid, "color", ["black", "red", "blue"][v])
            yield t(vid, "size", ["S", "M", "L"][v])
            yield t(vid, "price", round(price * (1 + 0.05 * v), 2))
            yield t(vid, "available", (i + v) % 7 != 0)
    n_vendor = max(60, n(60))
    vendors = []
    for i in range(n_vendor):
        vid = f"V-{1001 + i}"
        vendors.append(vid)
        status = "approved"
        if i % 20 == 3:
            status = "blocked"
        elif i % 20 == 7:
            status = "pending"
        elif i % 30 == 11:
            status = "suspended"
        yield typ(vid, "Vendor")
        yield t(vid, "name", f"Vendor {1001 + i}")
        yield t(vid, "vendor_id", f"{1001 + i}")
        yield t(vid, "country", rng.choice(["US", "US", "CA", "DE", "MX", "GB"]))
        yield t(vid, "sanctioned", False)
        yield t(vid, "status", status)
        yield t(vid, "category", rng.choice(["fasteners", "safety", "office", "packaging", "tools"]))
        yield t(vid, "onboarded_on", day(10 + i % 5) if i % 15 == 5 else day(100 + 41 * i % 2000))
        yield t(vid, "risk_rating", 1 + i % 5)
        yield t(vid, "payment_terms_days", rng.choice([15, 30, 45, 60]))
        yield t(vid, "buyer", node(buyers[i % len(buyers)]))
        if i % 25 == 9:
            yield t(vid, "bank_account_changed_on", day(5))
        if i % 16 == 13:  # ownership: hop 1 to a sanctioned owner, or 2 / 3 hops through holdings
            yield t(vid, "owned_by", node(f"LE-{(i // 16 % 3) * 10 + [1, 2, 3][i // 16 % 3] - 1 + 1:04d}"))
    # Purchase orders, lines, receipts; invoices against them with deliberate exceptions.
    n_inv = max(320, n(320))
    inv_no = 10001
    po_no = 5001
    gr_no = 7001
    for i in range(n_inv):
        vendor = vendors[i % len(vendors)]
        po = f"PO-{po_no}"
        po_no += 1
        requester = requesters[i % len(requesters)]
        lines = []
        for li in range(1 + i % 4):
            qty = float(rng.randint(1, 40))
            price = round(rng.uniform(3, 400 if i % 9 else 9000), 2)
            lines.append((f"POL-{po[3:]}-{li + 1}", rng.choice(products), qty, price))
        total = round(sum(q * p for _, _, q, p in lines), 2)
        yield typ(po, "PurchaseOrder")
        yield t(po, "po_number", po)
        yield t(po, "vendor", node(vendor))
        yield t(po, "requester", node(requester))
        yield t(po, "department", node(f"DEPT-{next(e[4] for e in employees if e[0] == requester)}"))
        yield t(po, "total_amount", total)
        yield t(po, "open_amount", total if i % 23 != 4 else round(total / 2, 2))
        yield t(po, "status", "closed" if i % 29 == 6 else "open")
        yield t(po, "order_date", day(30 + i % 200))
        kind = i % 12  # 0 short receipt, 1 price mismatch, 2 no PO; others clean
        inv = f"INV-{inv_no}"
        inv_no += 1
        inv_total = 0.0
        yield typ(inv, "Invoice")
        for li, (pol, prod, qty, price) in enumerate(lines):
            yield typ(pol, "PurchaseOrderLine")
            yield t(po, "po_lines", node(pol))
            yield t(pol, "product", node(prod))
            yield t(pol, "quantity", qty)
            yield t(pol, "unit_price", price)
            yield t(pol, "amount", round(qty * price, 2))
            received = qty - 1 if kind == 0 and li == 0 and qty > 1 else qty
            gr = f"GR-{gr_no}"
            gr_no += 1
            yield typ(gr, "GoodsReceipt")
            yield t(pol, "receipts", node(gr))
            yield t(gr, "po_line", node(pol))
            yield t(gr, "quantity", received)
            yield t(gr, "received_on", day(10 + i % 20))
            yield t(gr, "received_by", node(requesters[(i + 3) % len(requesters)]))
            il = f"{inv}-L{li + 1}"
            inv_price = round(price * 1.1, 2) if kind == 1 and li == 0 else price
            yield typ(il, "InvoiceLine")
            yield t(inv, "invoice_lines", node(il))
            yield t(il, "product", node(prod))
            yield t(il, "quantity", qty)
            yield t(il, "unit_price", inv_price)
            yield t(il, "amount", round(qty * inv_price, 2))
            if kind != 2:
                yield t(il, "po_line", node(pol))
            inv_total += qty * inv_price
        yield t(inv, "invoice_number", f"{vendor[2:]}-{1000 + i}")
        yield t(inv, "vendor", node(vendor))
        if kind != 2:
            yield t(inv, "purchase_order", node(po))
        yield t(inv, "amount", round(inv_total, 2))
        yield t(inv, "currency", "USD")
        yield t(inv, "invoice_date", day(5 + i % 25))
        yield t(inv, "due_date", day(5 + i % 25) + dt.timedelta(days=30))
        yield t(inv, "status", "paid" if i % 13 == 8 else "approved" if i % 5 == 1 else "received")
        if i % 40 == 17:  # a duplicate: same vendor and number, a new IRI
            dup = f"INV-{inv_no}"
            inv_no += 1
            yield typ(dup, "Invoice")
            yield t(dup, "invoice_number", f"{vendor[2:]}-{1000 + i}")
            yield t(dup, "vendor", node(vendor))
            yield t(dup, "purchase_order", node(po))
            yield t(dup, "amount", round(inv_total, 2))
            yield t(dup, "currency", "USD")
            yield t(dup, "invoice_date", day(3))
            yield t(dup, "due_date", day(3) + dt.timedelta(days=30))
            yield t(dup, "status", "received")
    # Customers, orders, leads.
    owners = [e[0] for e in employees if e[1] == "account_manager"] or [sales_staff[0][0]]
    n_cust = max(160, n(160))
    for i in range(n_cust):
        cid = f"C-{2001 + i}"
        yield typ(cid, "Customer")
        yield t(cid, "name", f"Customer {2001 + i}")
        yield t(cid, "tier", TIERS[i % 4])
        yield t(cid, "country", rng.choice(["US", "CA", "DE", "FR", "JP", "BR"]))
        yield t(cid, "region", REGIONS[i % len(REGIONS)])
        yield t(cid, "industry", rng.choice(["manufacturing", "retail", "healthcare", "construction"]))
        if i % 3:
            yield t(cid, "account_owner", node(owners[i % len(owners)]))
        limit = float(rng.choice([50_000, 100_000, 250_000, 1_000_000]))
        yield t(cid, "credit_limit", limit)
        yield t(cid, "open_balance", round(limit * (1.2 if i % 19 == 4 else rng.uniform(0, 0.9)), 2))
        yield t(cid, "customer_since", day(300 + 13 * i % 4000))
        yield t(cid, "annual_revenue", float(rng.randint(1, 500)) * 1e5)
    for i in range(max(220, n(220))):
        so = f"SO-{3001 + i}"
        cust = f"C-{2001 + i % n_cust}"
        yield typ(so, "SalesOrder")
        yield t(so, "order_number", so)
        yield t(so, "customer", node(cust))
        yield t(so, "sales_rep", node(sales_staff[i % len(sales_staff)][0]))
        yield t(so, "order_date", day(1 + i % 60))
        yield t(so, "status", ["confirmed", "confirmed", "draft", "shipped", "cancelled"][i % 5 if i % 7 else 0])
        total = 0.0
        for li in range(1 + i % 3):
            sol = f"SOL-{3001 + i}-{li + 1}"
            prod = products[(i * 7 + li) % len(products)]
            qty = float(rng.randint(1, 200 if i % 10 else 2000))
            price = round(rng.uniform(5, 600), 2)
            total += qty * price
            yield typ(sol, "SalesOrderLine")
            yield t(so, "order_lines", node(sol))
            yield t(sol, "product", node(prod))
            yield t(sol, "quantity", qty)
            yield t(sol, "unit_price", price)
            yield t(sol, "amount", round(qty * price, 2))
        yield t(so, "total_amount", round(total, 2))
        yield t(so, "margin_percent", float(rng.choice([8, 12, 18, 22, 28, 35])))
    for i in range(max(80, n(80))):
        lead = f"LEAD-{4001 + i}"
        yield typ(lead, "Lead")
        yield t(lead, "company_name", f"Prospect {4001 + i}")
        yield t(lead, "country", rng.choice(["US", "CA", "DE", "FR", "JP", "BR"]))
        yield t(lead, "region", REGIONS[i % len(REGIONS)])
        yield t(lead, "industry", rng.choice(["manufacturing", "retail", "healthcare", "construction"]))
        yield t(lead, "employee_count", 0 if i % 13 == 5 else rng.randint(5, 5000))
        yield t(lead, "estimated_value", float(rng.choice([5, 20, 80, 150, 300, 900])) * 1e3)
        yield t(lead, "source", ["web", "referral", "trade_show", "partner", "cold_call"][i % 5])
        yield t(lead, "email_domain", "gmail.com" if i % 13 == 5 else f"prospect{4001 + i}.example")
        if i % 6 == 2:
            yield t(lead, "existing_customer", node(f"C-{2001 + (i * 5) % n_cust}"))


def write(path: Path, *, seed: int = 7, triples: int | None = None, scale: float | None = None,
          fmt: str = "nt") -> int:
    """Write a graph; `triples` picks the scale that gives about that many triples."""
    if scale is None:
        scale = (triples / TRIPLES_PER_UNIT) if triples else 1.0
    lines = generate(seed=seed, scale=scale)
    count = 0
    if fmt == "turtle":
        from rdflib import Graph

        g = Graph()
        g.bind("bw", BW)
        g.bind("bwd", BWD)
        g.parse(data="\n".join(lines), format="nt")
        count = len(g)
        text = g.serialize(format="turtle")
        path.write_text(text, encoding="utf-8")
        return count
    with path.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(line)
            f.write("\n")
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--triples", type=int, default=None)
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--format", choices=["nt", "turtle"], default="nt")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    n = write(Path(a.out), seed=a.seed, triples=a.triples, scale=a.scale, fmt=a.format)
    print(f"wrote {n} triples to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
