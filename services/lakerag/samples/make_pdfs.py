"""Regenerate the sample PDFs in samples/docs/ from the text kept inline here.

Run: .venv/bin/python services/lakerag/samples/make_pdfs.py [OUT_DIR]
The text is original (a fictional company, Orion Freight). Each inner list is one
page, so page counts are fixed; a fixed creation date keeps the bytes reproducible.
Core fonts only cover Latin-1, so the text avoids typographic quotes and dashes.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from fpdf import FPDF

DOCS_DIR = Path(__file__).parent / "docs"
FIXED_DATE = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

# file name -> (title, pages); a page is a list of (heading, paragraph) sections.
PDFS: dict[str, tuple[str, list[list[tuple[str, str]]]]] = {
    "data-retention-policy.pdf": (
        "Orion Freight - Data Retention Policy (DRP-2026, version 3.2)",
        [
            [
                (
                    "1. Purpose and scope",
                    (
                        "This policy states how long Orion Freight keeps the data it collects while "
                        "moving consignments across its European network, and how that data is "
                        "destroyed when the period ends. It applies to every system that stores "
                        "company data: the lakehouse on object storage, the operational databases "
                        "behind the booking portal, the Kafka clusters, the warehouse scanners and "
                        "any spreadsheet that leaves a shared drive. The policy is owned by the Data "
                        "Governance Office, led by Ingrid Vasquez-Holm, and was approved by the "
                        "executive board on 3 February 2026. It replaces DRP-2023, which did not "
                        "cover streaming data at all."
                    ),
                ),
                (
                    "2. Principles",
                    (
                        "We keep data only as long as a documented business or legal need exists. "
                        "Every dataset in the lake must carry a retention class tag; a dataset "
                        "without one is treated as class R5, the shortest, until its owner fixes "
                        "the tag. Copies inherit the class of their source, so a derived gold table "
                        "can never outlive the silver table it was built from. Anonymised data that "
                        "cannot be linked back to a person or a customer account is outside the "
                        "scope of this policy, but the anonymisation method must be reviewed by the "
                        "Data Governance Office before the data is released from its class."
                    ),
                ),
                (
                    "3. Who is responsible",
                    (
                        "Dataset owners choose the retention class and answer for it. The "
                        "Lakehouse Platform team runs the automated deletion jobs and produces the "
                        "evidence that they ran. The Data Protection Officer reviews any class that "
                        "involves personal data. Internal Audit samples the deletion evidence once "
                        "per quarter."
                    ),
                ),
            ],
            [
                (
                    "4. Retention classes",
                    (
                        "Class R1, operational telemetry (truck GPS pings, reefer temperatures, "
                        "scanner heartbeats): kept in hot storage for 90 days, then in the cold tier "
                        "for 13 months, then deleted. Class R2, shipment and billing records "
                        "(consignment notes, proofs of delivery, invoices): kept for 7 years from "
                        "the end of the financial year because tax law in the Netherlands and "
                        "Germany requires it. Class R3, customer personal data (contact names, "
                        "phone numbers, delivery instructions that name a person): kept for 24 "
                        "months after the customer's last shipment, then anonymised in place. "
                        "Class R4, driver performance data: kept for 18 months and never joined "
                        "with payroll data. Class R5, application and access logs: kept for 30 "
                        "days unless a security investigation extends them."
                    ),
                ),
                (
                    "5. Data we never keep",
                    (
                        "Orion Freight does not collect biometric data of drivers, even where a "
                        "telematics vendor offers fatigue cameras. Payment card numbers are "
                        "tokenised by the payment provider and must never land in the lake in "
                        "clear text. If such data is found, the finder opens a Severity 2 incident "
                        "and the affected files are quarantined within one business day."
                    ),
                ),
                (
                    "6. How deletion works in the lake",
                    (
                        "Each night the retention job reads the class tags, deletes expired rows "
                        "with a Delta DELETE, and then runs VACUUM with a retention window of 168 "
                        "hours, so deleted rows disappear from storage one week later. Time travel "
                        "beyond that window is therefore not available for regulated tables. The "
                        "job writes a deletion certificate per table, listing the predicate, the "
                        "number of rows removed and the table version before and after. "
                        "Certificates are kept for 7 years in the bucket "
                        "orx-prd-euw1-governance-evidence."
                    ),
                ),
            ],
            [
                (
                    "7. Legal holds",
                    (
                        "When litigation or a regulator's request is expected, the General Counsel "
                        "may place a legal hold. The requester opens a ServiceDesk ticket of type "
                        "LH and names the datasets and the time range. The General Counsel decides "
                        "within 2 business days. While a hold is active the retention job skips the "
                        "affected partitions and logs each skip. Holds are reviewed every 90 days "
                        "and lifted in writing; a lifted hold releases the data to its normal "
                        "schedule on the next nightly run."
                    ),
                ),
                (
                    "8. Exceptions",
                    (
                        "An owner who needs to keep data longer than its class allows submits an "
                        "exception request with the reason, the extra period and the controls that "
                        "limit access. The Retention Exceptions Board meets on the first Tuesday of "
                        "each month. Exceptions are granted for at most 12 months and must be "
                        "renewed, not extended silently."
                    ),
                ),
                (
                    "9. Audit and review",
                    (
                        "Internal Audit checks a sample of 25 deletion certificates each quarter "
                        "and compares them with the table history. Findings go to the Data "
                        "Governance Office, which reports to the board twice a year. This policy "
                        "is reviewed every year in January. Questions go to "
                        "governance@orionfreight.example."
                    ),
                ),
            ],
        ],
    ),
    "incident-postmortem-inc-2291.pdf": (
        "Postmortem INC-2291: stale gold tables after a telemetry schema change",
        [
            [
                (
                    "Summary",
                    (
                        "On 14 March 2026 the nightly lakehouse pipeline failed for 3 hours and 42 "
                        "minutes. The gold tables that feed the ETA predictor were not refreshed, "
                        "so about 41,200 shipment arrival estimates were computed from data that "
                        "was one day old. No data was lost. Customers saw wider delivery windows "
                        "in the tracking portal for part of the morning. The incident was rated "
                        "Severity 2. Incident commander: Thaddeus Okonkwo-Lindqvist. Scribe: "
                        "Priya Ramaswamy."
                    ),
                ),
                (
                    "Timeline (CET)",
                    (
                        "02:10 The silver job for telemetry starts as scheduled. 02:31 The job "
                        "fails with error code E-7731-QX, raised by the internal manifest loader, "
                        "which reported a checksum mismatch on the partition manifest. 02:36 The "
                        "alert LakeIngestLagHigh fires and pages the on-call engineer. 02:58 The "
                        "on-call engineer retries the job; it fails again with the same code. "
                        "03:40 The incident commander is paged and a bridge is opened. 04:47 The "
                        "team finds that the producer of the GPS topic started sending the field "
                        "odometer_km as a string instead of a number. 05:30 A cast is deployed in "
                        "the bronze job and the manifest is rebuilt. 05:52 The pipeline completes "
                        "and the gold tables are current again."
                    ),
                ),
            ],
            [
                (
                    "Root cause",
                    (
                        "A firmware update of the telematics units, rolled out by the vendor "
                        "without notice, changed the type of odometer_km. The schema registry "
                        "accepted the change because the subject was configured with "
                        "compatibility NONE, a leftover from the migration to version 3 of the "
                        "topic. The bronze job inferred the new type, wrote a file whose schema "
                        "disagreed with the table, and the manifest loader rejected the partition. "
                        "The error text for E-7731-QX did not say which column was at fault, which "
                        "cost most of the two hours spent on diagnosis."
                    ),
                ),
                (
                    "What went well",
                    (
                        "The alert fired within five minutes of the failure. Yesterday's gold "
                        "tables stayed readable, so the ETA predictor degraded instead of failing. "
                        "The rollback plan in the runbook worked as written."
                    ),
                ),
                (
                    "Action items",
                    (
                        "ORX-4502: set the schema registry compatibility of every production "
                        "topic to BACKWARD (owner: Lakehouse Platform, due 31 March). ORX-4503: "
                        "make the manifest loader name the column and both types when it raises "
                        "E-7731-QX (owner: Priya Ramaswamy, due 15 April). ORX-4504: pin the "
                        "bronze schema for telemetry instead of inferring it (owner: Thaddeus "
                        "Okonkwo-Lindqvist, due 15 April). ORX-4505: ask the telematics vendor for "
                        "14 days of notice before firmware changes that touch the payload (owner: "
                        "Procurement, due 30 April)."
                    ),
                ),
            ],
        ],
    ),
    "employee-travel-policy.pdf": (
        "Orion Freight - Employee Travel Policy (HR-TRV-07)",
        [
            [
                (
                    "Who this applies to",
                    (
                        "This policy applies to every employee and contractor who travels on "
                        "company business, including visits to hubs, customer sites and "
                        "conferences. Travel must have a business purpose that your manager can "
                        "explain in one sentence. When a video call would do, choose the call."
                    ),
                ),
                (
                    "Booking",
                    (
                        "All trips are booked through the Wayfarer travel portal so that the "
                        "company knows where people are if something goes wrong. Bookings made "
                        "elsewhere are not reimbursed unless Wayfarer had no availability and you "
                        "kept a screenshot that shows it. Book at least 14 days ahead where you "
                        "can; late bookings need a reason in the trip request."
                    ),
                ),
                (
                    "Rail, air and car",
                    (
                        "Rail is the default for any journey under 700 km, for example Rotterdam "
                        "to Frankfurt or Hamburg to Duisburg, even when a flight is cheaper. "
                        "Flights are economy class. Business class is allowed only for a single "
                        "flight segment longer than 6 hours and needs approval from a vice "
                        "president before booking. Private cars may be used when a site cannot be "
                        "reached by public transport; mileage is reimbursed at EUR 0.23 per km. "
                        "Rental cars must be the compact category unless you carry equipment."
                    ),
                ),
            ],
            [
                (
                    "Hotels",
                    (
                        "The hotel cap is EUR 165 per night in most cities, and EUR 210 per night "
                        "in London, Paris, Zurich and Copenhagen. The cap includes taxes but not "
                        "breakfast. If a conference hotel costs more, your manager may approve the "
                        "difference in the trip request."
                    ),
                ),
                (
                    "Per diem allowances",
                    (
                        "Meals are covered by a daily allowance rather than receipts: EUR 62 per "
                        "day in the Netherlands, EUR 78 per day in Germany and EUR 70 per day in "
                        "other EU countries. On the first and last day of a trip you receive half "
                        "of the daily amount. Meals paid by a customer or a conference reduce the "
                        "allowance by 20 percent for breakfast and 40 percent for lunch or dinner."
                    ),
                ),
                (
                    "Expense claims",
                    (
                        "Submit claims in the finance system within 30 days of returning. Attach "
                        "receipts for everything except per diems. Claims older than 90 days are "
                        "rejected. Alcohol, minibar items, fines and upgrades you chose yourself "
                        "are never reimbursed. Travel questions go to the People Operations desk; "
                        "the policy owner is Rosalind Achterberg."
                    ),
                ),
            ],
        ],
    ),
    "spark-tuning-notes.pdf": (
        "Spark tuning notes: eta-features-nightly",
        [
            [
                (
                    "Context",
                    (
                        "The job eta-features-nightly builds the feature table for the ETA "
                        "predictor from 13 months of shipment events and telemetry. In January it "
                        "took 47 minutes on the shared cluster and regularly spilled to disk. "
                        "These notes record what we changed and why, so the next person does not "
                        "undo it by accident. After the changes below the job runs in 18 minutes "
                        "on the same hardware."
                    ),
                ),
                (
                    "Settings that mattered",
                    (
                        "spark.sql.shuffle.partitions is set to 384, three times the number of "
                        "executor cores, instead of the default 200. Adaptive query execution stays "
                        "on, with spark.sql.adaptive.skewJoin.enabled set to true, because one "
                        "marketplace customer, account C-000001, produces about a third of all "
                        "shipments and made a single join task run for 20 minutes. Executors get "
                        "14g of memory and 3g of memoryOverhead; less overhead caused containers "
                        "to be killed during the Parquet write. The broadcast join threshold is "
                        "raised to 64 MB so the hub and lane dimension tables are broadcast."
                    ),
                ),
                (
                    "Things that did not help",
                    (
                        "Caching the raw events DataFrame made the job slower, because it was read "
                        "only once. Increasing executor cores from 4 to 8 caused garbage "
                        "collection pauses of several seconds. Switching the output to 1 GB "
                        "target files made downstream readers slower, so we returned to 256 MB."
                    ),
                ),
                (
                    "How to check a change",
                    (
                        "Run the job against the staging snapshot with the flag --sample-days 30 "
                        "and compare the stage timeline in the Spark UI with the baseline run "
                        "saved under the tag tuning-baseline-2026-01. Look first at shuffle spill "
                        "and at the longest task of each stage; a change that moves the median but "
                        "not the longest task rarely shortens the job. Record every experiment in "
                        "this document, including the ones that failed, with the date and the "
                        "cluster size. Reviewer for changes to these settings: Bartholomew "
                        "Nakagawa-Reyes."
                    ),
                ),
            ],
        ],
    ),
}


def render(title: str, pages: list[list[tuple[str, str]]]) -> FPDF:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(title)
    pdf.set_author("Orion Freight")
    pdf.set_auto_page_break(auto=True, margin=18)
    for number, sections in enumerate(pages, start=1):
        pdf.add_page()
        if number == 1:
            pdf.set_font("Helvetica", "B", 15)
            pdf.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        for heading, text in sections:
            pdf.set_font("Helvetica", "B", 12)
            pdf.multi_cell(0, 7, heading, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", "", 11)
            # Left-aligned: justified text uses word spacing that some extractors drop.
            pdf.multi_cell(0, 5.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    return pdf


def write_pdfs(out_dir: Path = DOCS_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (title, pages) in PDFS.items():
        path = out_dir / name
        render(title, pages).output(str(path))
        written.append(path)
    return written


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS_DIR
    for path in write_pdfs(out_dir):
        print(f"wrote {path}: {len(PDFS[path.name][1])} page(s)")


if __name__ == "__main__":
    main()
