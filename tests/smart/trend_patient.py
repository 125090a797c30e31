"""A synthetic ward patient with nine days of results, for the assessment view's trends.

`cov-trend-ward`: 61-year-old man on low-flow oxygen, admitted 9 days ago; daily D-dimer (FEU,
ng/mL, lab reference range 500), platelets falling from 260 to 88 ×10³/µL, INR, fibrinogen,
creatinine in µmol/L rising from 80 to 135, three weights, the bedside values of a SOFA-4 and the
last PT, and enoxaparin 40 mg given once a day (MedicationAdministration) with an active order. Times are relative to `now`, as in
conformance/patients.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

PID = "cov-trend-ward"
UCUM = "http://unitsofmeasure.org"
DAYS = 9


def _stamp(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _obs(oid: str, loinc: str, text: str, when: datetime, value: float, unit: str, **extra) -> dict:
    res = {"resourceType": "Observation", "id": oid, "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": loinc}], "text": text},
           "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": _stamp(when),
           "issued": _stamp(when + timedelta(minutes=40)),
           "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}
    res.update(extra)
    return res


def bundle(now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc).replace(microsecond=0)
    day0 = now - timedelta(days=DAYS)
    entries: list[dict] = [
        {"resourceType": "Patient", "id": PID, "name": [{"given": ["Tomas"], "family": "Trendwell"}],
         "gender": "male", "birthDate": (now - timedelta(days=61 * 365 + 40)).date().isoformat()},
        {"resourceType": "Condition", "id": f"{PID}-covid",
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                            "code": "confirmed"}]},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "U07.1"}], "text": "COVID-19"},
         "subject": {"reference": f"Patient/{PID}"}, "onsetDateTime": _stamp(day0)},
        {"resourceType": "Procedure", "id": f"{PID}-o2", "status": "in-progress",
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "371907003"}],
                  "text": "Oxygen administration by nasal cannula"},
         "subject": {"reference": f"Patient/{PID}"}, "performedPeriod": {"start": _stamp(day0)}},
        {"resourceType": "MedicationRequest", "id": f"{PID}-enox", "status": "active", "intent": "order",
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "67108"}], "text": "enoxaparin"},
         "subject": {"reference": f"Patient/{PID}"}, "authoredOn": _stamp(day0 + timedelta(hours=6)),
         "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                "route": {"coding": [{"system": "http://snomed.info/sct", "code": "34206005"}]},
                                "doseAndRate": [{"doseQuantity": {"value": 40, "unit": "mg", "system": UCUM,
                                                                  "code": "mg"}}]}]},
        _obs(f"{PID}-height", "8302-2", "Body height", day0, 180, "cm"),
    ]
    d_dimer = [900, 1100, 1500, 2100, 2600, 3000, 3300, 3500, 3800]
    platelets = [260, 240, 215, 190, 160, 135, 118, 101, 88]
    inr = [1.0, 1.1, 1.1, 1.2, 1.2, 1.3, 1.3, 1.4, 1.4]
    fibrinogen = [5.8, 5.5, 5.1, 4.6, 4.0, 3.5, 3.0, 2.6, 2.2]
    creatinine = [80, 84, 90, 97, 104, 112, 120, 128, 135]
    for n in range(DAYS):
        t = day0 + timedelta(days=n, hours=6) + timedelta(hours=18 if n == DAYS - 1 else 0)
        if t > now - timedelta(hours=1):
            t = now - timedelta(hours=2)
        entries += [
            _obs(f"{PID}-dd-{n}", "48065-7", "D-dimer FEU", t, d_dimer[n], "ng/mL{FEU}",
                 referenceRange=[{"high": {"value": 500, "unit": "ng/mL{FEU}", "system": UCUM, "code": "ng/mL{FEU}"}}]),
            _obs(f"{PID}-plt-{n}", "777-3", "Platelets", t, platelets[n], "10*3/uL"),
            _obs(f"{PID}-inr-{n}", "6301-6", "INR", t, inr[n], "{INR}"),
            _obs(f"{PID}-fib-{n}", "3255-7", "Fibrinogen", t, fibrinogen[n], "g/L"),
            _obs(f"{PID}-cr-{n}", "14682-9", "Creatinine", t, creatinine[n], "umol/L"),
            _obs(f"{PID}-hb-{n}", "718-7", "Haemoglobin", t, 13.0 - 0.2 * n, "g/dL"),
        ]
        if n == DAYS - 1:   # the bedside values and the last PT and bilirubin: a complete SOFA-4 and DIC score
            near = now - timedelta(hours=1)
            entries += [
                _obs(f"{PID}-pt", "5902-2", "Prothrombin time", t, 14.6, "s",
                     referenceRange=[{"high": {"value": 13.5, "unit": "s", "system": UCUM, "code": "s"}}]),
                _obs(f"{PID}-bili", "1975-2", "Bilirubin", t, 0.9, "mg/dL"),
                _obs(f"{PID}-map", "8478-0", "Mean blood pressure", near, 82, "mm[Hg]"),
                _obs(f"{PID}-gcs", "9269-2", "Glasgow Coma Scale", near, 15, "{score}"),
                _obs(f"{PID}-pao2", "2703-7", "PaO2", near, 68, "mm[Hg]"),
                _obs(f"{PID}-fio2", "3150-0", "Inhaled oxygen concentration", near, 32, "%"),
            ]
        if n % 4 == 0 or n == DAYS - 1:
            entries.append(_obs(f"{PID}-wt-{n}", "29463-7", "Body weight", t, 92 - 0.5 * n, "kg"))
        if n >= 1:
            entries.append({
                "resourceType": "MedicationAdministration", "id": f"{PID}-enox-given-{n}", "status": "completed",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                          "code": "67108"}], "text": "enoxaparin"},
                "subject": {"reference": f"Patient/{PID}"},
                "effectiveDateTime": _stamp(day0 + timedelta(days=n, hours=9)),
                "request": {"reference": f"MedicationRequest/{PID}-enox"},
                "dosage": {"dose": {"value": 40, "unit": "mg", "system": UCUM, "code": "mg"},
                           "route": {"coding": [{"system": "http://snomed.info/sct", "code": "34206005"}]}}})
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                      for r in entries]}
