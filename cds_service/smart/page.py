"""The assessment page: a view model built from one Evaluation, and its HTML.

Everything shown comes from the assessment the cards are built from (`logic.assess`), the
inputs extraction kept (value and unit as the lab reported them, time, source resource
TYPE, never its id) and the trend series of `smart.data`. Wording is hedged; codes are
explained in words; every threshold shown is read from the policy.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from . import charts
from .data import SERIES, UNIT_TEXT, reported_text

# ---------------------------------------------------------------- words

INPUT_LABELS = {
    "weight": "Weight", "height": "Height", "recorded_bmi": "BMI (recorded)", "creatinine": "Creatinine",
    "d_dimer": "D-dimer", "platelets": "Platelets", "inr": "INR", "pt": "Prothrombin time",
    "fibrinogen": "Fibrinogen", "hemoglobin": "Haemoglobin", "bilirubin": "Bilirubin",
    "pf_ratio": "PaO2/FiO2", "pao2": "PaO2", "fio2": "FiO2", "map": "Mean arterial pressure",
    "gcs": "Glasgow Coma Scale", "urine_output_24h": "Urine output (24 h)", "anti_xa": "Anti-Xa",
    "age_years": "age (Patient.birthDate)", "sex": "sex (Patient.gender)",
    "d_dimer_basis": "D-dimer reference range or FEU/DDU basis", "pt_reference": "PT reference range",
    "respiratory_support": "oxygen or respiratory support record", "vasoactive_rate": "vasopressor rate",
}
MEASUREMENTS = ("d_dimer", "platelets", "inr", "pt", "fibrinogen", "hemoglobin", "creatinine", "bilirubin",
                "weight", "height", "recorded_bmi", "pf_ratio", "pao2", "fio2", "map", "gcs",
                "urine_output_24h", "anti_xa")
FLAGS = {"covid19": "COVID-19 diagnosis", "active_bleeding": "Active bleeding",
         "recent_bleeding": "Recent bleeding", "bleeding_disorder": "Bleeding disorder",
         "hit_history": "History of HIT", "heparin_allergy": "Heparin allergy", "pregnancy": "Pregnancy"}
CONTRAINDICATIONS = {
    "active_bleeding": "Active bleeding (a Condition record)",
    "platelets_lt_25": "Platelets below {safety.platelets_abs_min} ×10⁹/L",
    "fibrinogen_lt_0.5": "Fibrinogen below {safety.fibrinogen_abs_min_g_l} g/L",
    "hit_history": "History of heparin-induced thrombocytopenia (heparins only)",
    "heparin_allergy": "Heparin or LMWH hypersensitivity (heparins only)",
    "fondaparinux_crcl_lt_30": "CrCl below 30 mL/min (fondaparinux only)",
}
CAUTIONS = {
    "platelets_lt_50": "Platelets below {safety.platelets_caution_min} ×10⁹/L",
    "hemoglobin_lt_8": "Haemoglobin below {safety.hemoglobin_caution_min_g_dl} g/dL",
    "fibrinogen_lt_1.0": "Fibrinogen below {safety.fibrinogen_caution_min_g_l} g/L",
    "dual_antiplatelet_therapy": "Dual antiplatelet therapy",
    "recent_bleeding": "Bleeding within {safety.recent_bleeding_days} days",
    "bleeding_disorder": "Known bleeding disorder",
}
_FLAG_OF = {"active_bleeding": "active_bleeding", "hit_history": "hit_history",
            "heparin_allergy": "heparin_allergy", "recent_bleeding": "recent_bleeding",
            "bleeding_disorder": "bleeding_disorder"}
_LAB_OF = {"platelets_lt_25": "platelets", "platelets_lt_50": "platelets", "fibrinogen_lt_0.5": "fibrinogen",
           "fibrinogen_lt_1.0": "fibrinogen", "hemoglobin_lt_8": "hemoglobin",
           "fondaparinux_crcl_lt_30": "creatinine"}

# Clinical rules v2 §13.1: pathway -> (title, condition, what the service recommends).
PATHWAYS = {
    "contraindicated": ("Pharmacological prophylaxis contraindicated",
                        "A contraindication that is not heparin-specific (active bleeding, platelets < 25, "
                        "fibrinogen < 0.5).",
                        "No pharmacological prophylaxis; consider mechanical prophylaxis and review active "
                        "anticoagulants."),
    "hit_acute": ("Acute heparin-induced thrombocytopenia",
                  "Acute HIT.",
                  "Consider stopping every heparin (including flushes) and a therapeutic-intensity non-heparin "
                  "anticoagulant with haematology advice (ASH 2018 HIT)."),
    "deescalate": ("Consider de-escalating to a prophylactic dose",
                   "Already therapeutic with UFH or LMWH started in this encounter, critically ill, no other "
                   "indication, no ECMO, no renal replacement circuit.",
                   "Consider switching to the prophylactic regimen unless VTE or another indication is "
                   "confirmed (NIH 2024; ASH 2021; REMAP-CAP/ACTIV-4a/ATTACC critically ill)."),
    "review_therapeutic": ("Review the therapeutic dose",
                           "Already therapeutic with UFH or LMWH, no other indication, and an escalation caution.",
                           "Consider the prophylactic dose: these are the NIH contraindications to therapeutic "
                           "dosing (NIH 2024)."),
    "keep_therapeutic": ("Therapeutic anticoagulation: nothing to change",
                         "Already therapeutic otherwise.", "Nothing to change."),
    "therapeutic_candidate": ("Therapeutic-dose heparin is an option",
                              "Not critically ill, on low-flow oxygen, D-dimer above the ULN, no escalation caution "
                              "(platelets and haemoglobin checked), not pregnant, no heparin-specific "
                              "contraindication, no renal replacement.",
                              "Consider therapeutic-dose LMWH for 14 days or until discharge, with the prophylactic "
                              "regimen as the alternative (ASH 2022 update, conditional, very low certainty; NIH "
                              "2024; CHEST 2022; ISTH 2023; ATTACC/ACTIV-4a/REMAP-CAP non-critically ill)."),
    "prophylaxis": ("Prophylactic-dose anticoagulation",
                    "No other pathway applies.",
                    "Consider the prophylactic regimen (weight- and renal-adjusted)."),
}
NOT_THERAPEUTIC = {
    "critically_ill": "critically ill (organ support)", "severity_unknown": "severity unknown (no oxygen record)",
    "no_low_flow_oxygen": "not on low-flow oxygen", "d_dimer_not_above_uln": "D-dimer not above the ULN",
    "d_dimer_unknown": "D-dimer unknown", "escalation_caution": "a bleeding caution",
    "cautions_unchecked": "platelets or haemoglobin not measured recently", "pregnancy": "pregnancy",
    "heparin_specific_contraindication": "a heparin-specific contraindication or a non-heparin anticoagulant",
    "renal_replacement": "renal replacement therapy", "disabled": "therapeutic option disabled by local policy",
}
# v1 evidence note codes (clinical rules v1 §13), used while the v2 `recommendation` is absent.
EVIDENCE_NOTES = {
    "critically_ill_prophylactic_only": ("Critically ill: prophylactic dose only",
                                         "On ICU-level organ support: a prophylactic dose only (weight-adjusted "
                                         "allowed), not intermediate or therapeutic (INSPIRATION 2021; "
                                         "REMAP-CAP/ACTIV-4a/ATTACC critically ill 2021)."),
    "therapeutic_option": ("Therapeutic-dose heparin is an option",
                           "Not critically ill, on low-flow oxygen with a raised D-dimer and no bleeding caution: "
                           "therapeutic-dose heparin is an option (ATTACC/ACTIV-4a/REMAP-CAP non-critically ill "
                           "2021; NIH 2022)."),
    "escalation_blocked": ("Prophylactic dose (bleeding caution)",
                           "Not critically ill, but a bleeding caution rules out doses above prophylaxis (NIH 2022)."),
    "prophylactic": ("Prophylactic dose", "Not critically ill; the criteria for therapeutic heparin are not all "
                     "met: prophylactic dose (ISTH 2020, CHEST 2020)."),
    "severity_unknown": ("Prophylactic dose (severity unknown)",
                         "No oxygen or organ-support record: if critically ill, prophylactic dose only."),
    "contraindicated": ("Pharmacological prophylaxis contraindicated", "A contraindication applies."),
    "already_therapeutic": ("Already on a therapeutic dose", "A therapeutic-dose anticoagulant is active."),
}
DRUG = {"enoxaparin": "enoxaparin", "heparin": "heparin (UFH)", "fondaparinux": "fondaparinux",
        "dalteparin": "dalteparin", "tinzaparin": "tinzaparin"}
FREQ = {1: "once daily", 2: "every 12 hours", 3: "every 8 hours", 4: "every 6 hours"}
BASIS = {"standard": "standard dose (BMI below {dosing.bmi_tier1})",
         "bmi_ge_30": "BMI-adjusted dose (BMI {dosing.bmi_tier1} or more)",
         "bmi_ge_40": "BMI-adjusted dose (BMI {dosing.bmi_tier2} or more)",
         "bmi_ge_50": "BMI-adjusted dose (BMI {dosing.bmi_tier3} or more, site option)",
         "crcl_lt_30": "renal dose (CrCl below {renal.crcl_cutoff} mL/min)",
         "pending_weight": "dose pending a recorded weight", "hit_history": "HIT history: fondaparinux"}
CARD_KINDS = {"prophylaxis_suggestion": "prophylaxis suggestion", "standard_prophylaxis": "standard prophylaxis",
              "contraindicated": "contraindication", "not_determinable": "not determinable",
              "dose_correction": "dose correction", "product_switch": "product switch",
              "escalation_warning": "escalation warning", "anti_xa": "anti-Xa monitoring",
              "duplicate_anticoagulant": "duplicate anticoagulant", "dose_above_maximum": "dose above maximum",
              "order_caution": "order caution"}


def fill(template: str, policy) -> str:
    """"{safety.platelets_abs_min}" -> the policy value."""
    out = template
    while "{" in out:
        head, rest = out.split("{", 1)
        key, tail = rest.split("}", 1)
        try:
            value = policy[key]
        except Exception:
            value = key
        out = head + (f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool)
                      else str(value)) + tail
    return out


def fmt(value: float | None, dp: int = 1) -> str:
    if value is None:
        return "not determinable"
    text = f"{value:,.{dp}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "—"
    hours = (now - moment).total_seconds() / 3600
    if hours < 0:
        return "future-dated"
    if hours < 1:
        return f"{int(hours * 60)} min ago"
    if hours < 48:
        return f"{int(hours)} h ago"
    return f"{int(hours // 24)} d ago"


def stamp(moment: datetime | None) -> str:
    if moment is None:
        return "date unknown"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def source_type(source: str | None) -> str:
    return source.split("/", 1)[0] if source else "—"


def points_text(p: int | None) -> str:
    return "?" if p is None else str(p)


def missing_names(names) -> str:
    return ", ".join(INPUT_LABELS.get(n, n.replace("_", " ")) for n in dict.fromkeys(names or ()))


# ---------------------------------------------------------------- view model

@dataclass
class Score:
    name: str
    verdict: str
    items: list[tuple[str, str, str]] = field(default_factory=list)   # (item, value used, points)
    missing: str = ""
    rule: str = ""
    state: str = "neutral"   # css: positive | negative | unknown | neutral


def build(ev, *, series: dict, doses: list, start: datetime, app_context: dict | None,
          open_server: bool, banner: bool = True) -> dict[str, Any]:
    """The page's view model. The patient's name, birth date and the time the data was read
    are always shown (issue 21 M1: with the EHR's banner off, no name was shown at all);
    `banner` is kept in the model for the record."""
    a, p = ev.assessment, ev.policy
    i = a.inputs
    now = a.now
    plt_unit = _platelet_unit(i.platelets)
    return {
        "now": stamp(now),
        "patient": _patient(ev),
        "banner": banner,
        "opened_from": _opened_from(app_context),
        "open_server": open_server,
        "recommendation": _recommendation(a, p),
        "signal": _signal(a, p),
        "scores": _scores(a, p),
        "charts": _charts(series, doses, start, now, p, plt_unit),
        "trend_days": max(1, round((now - start).total_seconds() / 86400)),
        "doses": [(stamp(d.time), d.text) for d in doses],
        "safety": _safety(a, p, plt_unit),
        "inputs": _inputs(a, now, plt_unit),
        "flags": _flags(i, now),
        "orders": [_order(o, c) for o, c in a.safety.orders],
        "rejected": sorted((INPUT_LABELS.get(k, k), v) for k, v in i.rejected.items()),
        "problems": sorted(getattr(ev.data, "problems", {}).items()),
        "sources": _sources(),
    }


CANONICAL_PLATELETS = "×10⁹/L"


def _platelet_unit(m) -> str:
    """One platelet unit on the page (issue 22): the lab's own when it equals ×10⁹/L number for
    number (×10³/µL, /nL), so the count, its chart and the thresholds read alike; else ×10⁹/L."""
    if m is None or not m.reported_unit or m.reported_value is None or m.value is None:
        return CANONICAL_PLATELETS
    if abs(m.reported_value - m.value) > 1e-9 * max(1.0, abs(m.value)):
        return CANONICAL_PLATELETS
    return UNIT_TEXT.get(m.reported_unit, m.reported_unit) or CANONICAL_PLATELETS


def _patient(ev) -> dict[str, str]:
    a = ev.assessment
    name = ""
    from .data import usable
    for res in usable(ev.data.resources):
        if res.get("resourceType") == "Patient" and res.get("id") == a.inputs.patient_id:
            for n in res.get("name") or []:
                if isinstance(n, dict):
                    name = n.get("text") or " ".join([*(n.get("given") or []), n.get("family") or ""]).strip()
                    if name:
                        break
    age = f"{a.inputs.age_years} y" if a.inputs.age_years is not None else "age unknown"
    sex = a.inputs.sex or "sex not recorded"
    return {"name": name or "Name not recorded", "age": age, "sex": sex,
            "birth": a.inputs.birth_date or "", "found": ev.patient_found()}


def _opened_from(app_context: dict | None) -> str:
    if not app_context:
        return ""
    kind = app_context.get("kind")
    return CARD_KINDS.get(kind, "") if isinstance(kind, str) else ""


def _dose_text(drug, dose_mg, dose_units, per_day) -> str:
    amount = f"{fmt(dose_mg)} mg" if dose_mg is not None else \
        f"{fmt(dose_units, 0)} units" if dose_units is not None else "dose not readable"
    freq = FREQ.get(int(per_day)) if per_day and float(per_day).is_integer() else None
    return f"{DRUG.get(drug, drug)} {amount} subcutaneous {freq or (str(per_day) + ' doses a day' if per_day else '')}".strip()


def _recommendation(a, p) -> dict[str, Any]:
    reg = a.regimen
    regimen = _dose_text(reg.drug, reg.dose_mg, reg.dose_units, reg.doses_per_day) if reg.drug else None
    basis = fill(BASIS.get(reg.basis, reg.basis.replace("_", " ")), p) if reg.basis else ""
    anti_xa = None
    if a.anti_xa.indicated is True:
        target = (f"target {fmt(a.anti_xa.target_low, 2)}–{fmt(a.anti_xa.target_high, 2)} IU/mL"
                  if a.anti_xa.target_low is not None else "no validated target for this dose")
        anti_xa = f"Anti-Xa monitoring indicated ({', '.join(r.replace('_', ' ') for r in a.anti_xa.reasons)}): {target}."
    rec = getattr(a, "recommendation", None)
    if rec is not None:
        pathway = _get(rec, "pathway")
        title, condition, action = PATHWAYS.get(pathway, (str(pathway).replace("_", " "), "", ""))
        because = [NOT_THERAPEUTIC.get(c, str(c).replace("_", " ")) for c in _get(rec, "not_therapeutic_because") or ()]
        ther = _get(rec, "therapeutic")
        therapeutic = _dose_text(_get(ther, "drug"), _get(ther, "dose_mg"), _get(ther, "dose_units"),
                                 _get(ther, "doses_per_day")) if ther and _get(ther, "drug") else None
        return {"v2": True, "pathway": pathway, "title": title, "condition": condition, "action": action,
                "because": because, "therapeutic": therapeutic, "regimen": regimen, "basis": basis,
                "anti_xa": anti_xa, "state": "alarm" if pathway in ("contraindicated", "hit_acute") else "ok"}
    code = _get(getattr(a, "evidence_note", None), "code") or "prophylactic"
    if a.safety.contraindications:
        code = "contraindicated"
    elif a.safety.already_therapeutic:
        code = "already_therapeutic"
    title, rule = EVIDENCE_NOTES.get(code, (code.replace("_", " "), ""))
    return {"v2": False, "pathway": code, "title": title, "condition": rule, "action": "", "because": [],
            "therapeutic": None, "regimen": regimen, "basis": basis, "anti_xa": anti_xa,
            "state": "alarm" if a.safety.contraindications else "ok"}


def _get(obj, name: str):
    """An attribute of a v2 object or a key of its JSON form; None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _signal(a, p) -> str:
    st = a.seed_trigger
    if st.triggered is None:
        return "Coagulopathy signal (SIC or D-dimer above 6× ULN, Tang 2020): not determinable."
    if not st.triggered:
        return "Coagulopathy signal (Tang 2020): not met."
    words = {"sic_positive": "SIC positive",
             "d_dimer_gt_6x_uln": f"D-dimer above {fmt(p['d_dimer.marked_multiple'])}× ULN"}
    return ("Coagulopathy signal (Tang 2020, observational, prognostic): "
            + " and ".join(words.get(r, r) for r in st.reasons) + ".")


def _pt_difference(seconds: float | None) -> str:
    """PT against its reference: "prolonged 2.5 s", never "prolonged -0.7 s" (issue 22)."""
    if seconds is None:
        return ""
    if seconds > 0:
        return f" (prolonged {fmt(seconds)} s)"
    if seconds < 0:
        return f" (shorter than reference by {fmt(-seconds)} s)"
    return " (equal to reference)"


def _mtext(m) -> str:
    if m is None:
        return "—"
    value = m.reported_value if m.reported_value is not None else m.value
    return reported_text(value, m.reported_unit or m.unit, m.comparator)


def _scores(a, p) -> list[Score]:
    i = a.inputs
    out = []
    sic = a.sic
    verdict = "not determinable" if sic.positive is None else (
        f"total {sic.total if sic.total is not None else '%d–%d' % sic.total_range}, "
        + ("positive" if sic.positive else "negative"))
    out.append(Score("SIC (Iba 2017)", verdict, [
        ("Platelets", _mtext(i.platelets), points_text(sic.platelet_points)),
        ("INR", _mtext(i.inr), points_text(sic.inr_points)),
        ("SOFA-4 (respiratory, cardiovascular, liver, renal)",
         fmt(a.sofa.sofa4, 0) if a.sofa.sofa4 is not None else f"{a.sofa.sofa4_lower_bound}–{a.sofa.sofa4_upper_bound}",
         points_text(sic.sofa_points))],
        missing_names(sic.missing),
        fill("Positive at a total of {sic.positive_total} or more"
             + (" with platelets + INR points above 2." if p["sic.require_plt_inr_gt_2"] else "."), p),
        "unknown" if sic.positive is None else ("positive" if sic.positive else "negative")))
    dic = a.isth_dic
    verdict = "not determinable" if dic.overt is None else (
        f"total {dic.total if dic.total is not None else '%d–%d' % dic.total_range}, "
        + ("overt DIC" if dic.overt else "not overt DIC"))
    pt = i.pt.seconds if i.pt is not None else None
    out.append(Score("ISTH overt DIC (Taylor 2001)", verdict, [
        ("Platelets", _mtext(i.platelets), points_text(dic.platelet_points)),
        ("D-dimer", _mtext(i.d_dimer.value) if i.d_dimer else "—", points_text(dic.d_dimer_points)),
        ("Prothrombin time", _mtext(pt) + _pt_difference(dic.pt_prolongation_s), points_text(dic.pt_points)),
        ("Fibrinogen", _mtext(i.fibrinogen), points_text(dic.fibrinogen_points))],
        missing_names(dic.missing), fill("Overt DIC at a total of {dic.overt_threshold} or more.", p),
        "unknown" if dic.overt is None else ("positive" if dic.overt else "negative")))
    sofa = a.sofa
    organs = [("Respiratory", "respiratory"), ("Cardiovascular", "cardiovascular"), ("Liver", "hepatic"),
              ("Renal", "renal"), ("Coagulation", "coagulation"), ("Central nervous system", "cns")]
    items = []
    for label, key in organs:
        gone = (sofa.missing_by_organ or {}).get(key)
        src = "missing: " + missing_names(gone) if gone and getattr(sofa, key) is None else \
            {"computed": "computed", "recorded": "recorded SOFA score"}.get((sofa.sources or {}).get(key) or "",
                                                                          "not determinable")
        items.append((label, src, points_text(getattr(sofa, key))))
    out.append(Score("SOFA (parts)", f"SOFA-4 {fmt(sofa.sofa4, 0) if sofa.sofa4 is not None else 'incomplete'}",
                     items, "", "SOFA-4 (respiratory, cardiovascular, liver, renal) feeds SIC (capped at 2 "
                     "points). Each organ missing an input is named in its row."))
    dd = a.d_dimer
    uln_src = {"reference_range": "the lab's reference range", "default_FEU": "the default FEU ULN",
               "default_DDU": "the default DDU ULN"}.get(dd.uln_source or "", "unknown")
    multiple = f"{fmt(dd.multiple_of_uln, 2)}× ULN" if dd.multiple_of_uln is not None else (
        f"{dd.comparator} {fmt(dd.value_mg_l / dd.uln_mg_l, 2)}× ULN" if dd.comparator and dd.value_mg_l
        and dd.uln_mg_l else "not determinable")
    out.append(Score("D-dimer multiple of ULN", multiple, [
        ("D-dimer", _mtext(i.d_dimer.value) if i.d_dimer else "—", ""),
        ("Basis", dd.basis or "unknown", ""),
        ("ULN", (f"{fmt(dd.uln_mg_l, 3)} mg/L from {uln_src}") if dd.uln_mg_l else "unknown", "")],
        missing_names(dd.missing), fill("Signal above {d_dimer.marked_multiple}× ULN (Tang 2020).", p),
        "unknown" if dd.gt_6x_uln is None else ("positive" if dd.gt_6x_uln else "negative")))
    an = a.anthropometrics
    out.append(Score("BMI", f"{fmt(an.bmi)} kg/m²" + (" (recorded)" if an.bmi_source == "recorded" else ""), [
        ("Weight", _mtext(i.weight), ""), ("Height", _mtext(i.height), "")],
        missing_names(an.missing), fill("Dose tiers at BMI {dosing.bmi_tier1} and {dosing.bmi_tier2}.", p)))
    r = a.renal
    basis = {"actual": "actual", "ideal": "ideal", "adjusted": "adjusted"}.get(r.crcl_weight_basis or "", "")
    out.append(Score("CrCl (Cockcroft–Gault)", f"{fmt(r.crcl_ml_min)} mL/min", [
        ("Creatinine", _mtext(i.creatinine), ""),
        ("Weight used", f"{fmt(r.weight_used_kg)} kg ({basis} body weight)" if r.weight_used_kg else "—", ""),
        ("Age, sex", f"{i.age_years if i.age_years is not None else '?'} y, {i.sex or '?'}", "")],
        missing_names(r.missing), fill("Renal dose below {renal.crcl_cutoff} mL/min.", p),
        "unknown" if r.crcl_lt_30 is None else ("positive" if r.crcl_lt_30 else "negative")))
    return out


def _charts(series, doses, start, now, p, plt_unit: str = CANONICAL_PLATELETS) -> list[dict]:
    R = charts.RefLine
    spec = [
        ("d_dimer", "D-dimer", "× ULN", (R(1.0, "1× ULN"), R(p["d_dimer.marked_multiple"],
                                                             f"{fmt(p['d_dimer.marked_multiple'])}× ULN", "alarm"))),
        ("platelets", "Platelets", "×10⁹/L", (R(150, "150"), R(100, "100"),
                                               R(p["safety.platelets_caution_min"], f"{fmt(p['safety.platelets_caution_min'])}", "alarm"),
                                               R(p["safety.platelets_abs_min"], f"{fmt(p['safety.platelets_abs_min'])}", "alarm"))),
        ("inr", "INR", "ratio", ()),
        ("fibrinogen", "Fibrinogen", "g/L", (R(p["dic.fibrinogen_low_g_l"], f"{fmt(p['dic.fibrinogen_low_g_l'])} g/L"),)),
        ("creatinine", "Creatinine", "mg/dL", ()),
        ("crcl", "CrCl (Cockcroft–Gault)", "mL/min", (R(p["renal.crcl_cutoff"], f"{fmt(p['renal.crcl_cutoff'], 0)} mL/min", "alarm"),)),
        ("weight", "Weight", "kg", ()),
    ]
    out = []
    for key, title, unit, lines in spec:
        pts = series.get(key, [])
        pts, unit, lines = _as_reported(pts, unit, lines)
        if key == "platelets" and pts and all(x.value == (x.reported_value if x.reported_value is not None
                                                          else x.value) for x in pts):
            # ×10³/µL and ×10⁹/L are the same number: every point in the page's one unit
            pts = [replace(x, shown=reported_text(x.value, plt_unit, x.comparator)) for x in pts]
            unit = plt_unit
        svg = charts.chart(title, unit, pts, start, now, lines=lines, doses=doses, chart_id=f"chart-{key}")
        latest = pts[-1].shown if pts else "no result"
        if key == "d_dimer" and pts:
            latest += f" ({fmt(pts[-1].value, 1)}× ULN)"
        out.append({"key": key, "title": title, "svg": Markup(svg), "count": len(pts), "latest": latest,
                    "rows": [(stamp(x.time), x.shown) for x in reversed(pts)]})
    return out


def _as_reported(pts, unit: str, lines):
    """Plot in the unit the lab used (creatinine in µmol/L stays in µmol/L) when every point
    has the same reported unit; the threshold lines are converted by the same factor."""
    from dataclasses import replace as _replace
    units = {p.reported_unit for p in pts}
    if not pts or len(units) != 1 or None in units or any(not p.reported_value or not p.value for p in pts):
        return pts, unit, lines
    factor = pts[0].reported_value / pts[0].value
    if abs(factor - 1) < 1e-9:
        return pts, UNIT_TEXT.get(pts[0].reported_unit, unit) or unit, lines
    new_pts = [_replace(p, value=p.reported_value) for p in pts]
    new_lines = tuple(charts.RefLine(r.value * factor, r.label, r.kind) for r in lines)
    return new_pts, UNIT_TEXT.get(pts[0].reported_unit, pts[0].reported_unit), new_lines


def _safety(a, p, plt_unit: str = CANONICAL_PLATELETS) -> dict[str, list]:
    i, s = a.inputs, a.safety
    undetermined = set(s.undetermined)

    def rows(table, found):
        out = []
        for code, text in table.items():
            if code in found:
                state, word = "present", "present"
            elif code in undetermined:
                state, word = "unknown", "could not be checked (" + INPUT_LABELS.get(_LAB_OF.get(code, ""), "value") \
                    .lower() + " missing or out of date)"
            elif code in _FLAG_OF and getattr(i, _FLAG_OF[code], None) is None:
                state, word = "absent", "none recorded"
            elif code == "dual_antiplatelet_therapy":
                state, word = "absent", "not found among active orders"
            elif code == "fondaparinux_crcl_lt_30" and a.renal.crcl_lt_30 is None:
                state, word = "unknown", "could not be checked (CrCl unknown)"
            else:
                state, word = "absent", "not present"
            out.append((fill(text, p).replace(CANONICAL_PLATELETS, plt_unit), state, word))
        return out
    # Codes the rules add later (v2: hit_acute, recent intracranial haemorrhage, ...) are shown too.
    extra_ci = {c: c.replace("_", " ").capitalize() for c in s.contraindications if c not in CONTRAINDICATIONS}
    extra_ca = {c: c.replace("_", " ").capitalize() for c in (*s.escalation_cautions, *undetermined)
                if c not in CAUTIONS and c not in CONTRAINDICATIONS and c not in extra_ci}
    return {"contraindications": rows({**CONTRAINDICATIONS, **extra_ci}, set(s.contraindications)),
            "cautions": rows({**CAUTIONS, **extra_ca}, set(s.escalation_cautions))}


def _inputs(a, now, plt_unit: str = CANONICAL_PLATELETS) -> list[dict]:
    i = a.inputs
    rows = []
    for name in MEASUREMENTS:
        value = getattr(i, name, None)
        if value is None:
            continue
        m = value.value if name == "d_dimer" else value.seconds if name == "pt" else value
        note = ""
        if m.reported_unit and m.unit and m.reported_unit != m.unit and not (
                name == "platelets" and plt_unit != CANONICAL_PLATELETS):   # same number, page's unit
            note = f"= {reported_text(m.value, m.unit, m.comparator)}"
        shown = _mtext(m)
        if name == "d_dimer" and value.basis_from_unit and value.basis_from_unit not in shown:
            shown += f" {value.basis_from_unit}"
        rows.append({"name": INPUT_LABELS[name], "value": shown, "canonical": note, "date": stamp(m.time),
                     "age": ago(m.time, now), "source": source_type(m.source)})
    return rows


def _flags(i, now) -> list[dict]:
    rows = []
    for name, label in FLAGS.items():
        f = getattr(i, name, None)
        if f is None:
            rows.append({"name": label, "value": "none recorded", "date": "—", "age": "—", "source": "—"})
        else:
            rows.append({"name": label, "value": "yes" if f.present else "no", "date": stamp(f.time),
                         "age": ago(f.time, now), "source": source_type(f.source)})
    return rows


def _order(o, cls) -> dict[str, str]:
    if o.continuous:
        text = f"{DRUG.get(o.ingredient, o.ingredient)} infusion"
    else:
        text = _dose_text(o.ingredient, o.dose_mg, o.dose_units, o.doses_per_day)
    return {"text": text, "class": cls or "class unknown", "source": source_type(o.source)}


# Citations the card vocabulary has no verified link for: a search that finds them (never a
# guessed DOI). `None`: no public document to link to.
SEARCH_LINKS = {
    "enoxaparin_label": "https://dailymed.nlm.nih.gov/dailymed/search.cfm?query=enoxaparin",
    "anti_xa_lab": None,
}


def _sources() -> list[tuple[str, str | None, str]]:
    """(label, url, kind): kind "" for a verified link, "search" for a search link, "none"."""
    from urllib.parse import quote_plus

    from ..cards import vocabulary
    evidence = getattr(vocabulary, "EVIDENCE", {})
    citations = getattr(vocabulary, "CITATIONS", {})
    out = [(label, url, "") for label, url in evidence.values()]
    for key, text in citations.items():
        if key in evidence:
            continue
        url = SEARCH_LINKS.get(key, "https://pubmed.ncbi.nlm.nih.gov/?term=" + quote_plus(text.split(" (")[0]))
        out.append((text, url, "search" if url else "none"))
    return out


# ---------------------------------------------------------------- HTML

_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)

PAGE = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Coagulopathy assessment</title>
<link rel="stylesheet" href="{{ css }}"><link rel="icon" href="{{ css[:-8] }}icon.svg">
</head><body>
<header class="banner">
  <h1>Coagulopathy assessment</h1>
  <p class="who"><strong>{{ v.patient.name }}</strong> · born {{ v.patient.birth or "(birth date not recorded)" }} · {{ v.patient.age }} · {{ v.patient.sex }}</p>
  <p class="meta">Data read from the EHR at <strong>{{ v.now }}</strong>; evaluated with the same rules as the cards.
  {% if v.opened_from %}Opened from the <strong>{{ v.opened_from }}</strong> card.{% endif %}</p>
  {% if v.open_server %}<p class="warn">Read from an open FHIR server without authorization (test set-up).</p>{% endif %}
</header>
<nav class="toc"><a href="#recommendation">Recommendation</a> <a href="#scores">Scores</a> <a href="#trends">Trends</a> <a href="#safety">Safety checks</a> <a href="#inputs">Inputs</a> <a href="#sources">Sources</a></nav>
<main>
<section id="recommendation" class="rec {{ v.recommendation.state }}">
  <h2>Recommendation: {{ v.recommendation.title }}</h2>
  {% if v.recommendation.action %}<p class="action">{{ v.recommendation.action }}</p>{% endif %}
  {% if v.recommendation.therapeutic %}<p>Therapeutic dose: <strong>{{ v.recommendation.therapeutic }}</strong> (enoxaparin 1 mg/kg actual body weight).</p>{% endif %}
  {% if v.recommendation.regimen %}<p>Prophylactic regimen: <strong>{{ v.recommendation.regimen }}</strong>{% if v.recommendation.basis %} — {{ v.recommendation.basis }}{% endif %}.</p>{% endif %}
  {% if v.recommendation.anti_xa %}<p>{{ v.recommendation.anti_xa }}</p>{% endif %}
  <p class="rule"><span class="tag">Rule{% if v.recommendation.v2 %} (pathway <code>{{ v.recommendation.pathway }}</code>){% endif %}</span> {{ v.recommendation.condition }}</p>
  {% if v.recommendation.because %}<p class="rule"><span class="tag">Therapeutic dose not suggested because</span> {{ v.recommendation.because | join("; ") }}.</p>{% endif %}
  <p class="signal">{{ v.signal }}</p>
  {% if v.orders %}<p>Active anticoagulant orders: {% for o in v.orders %}{{ o.text }} ({{ o.class }}, {{ o.source }}){% if not loop.last %}; {% endif %}{% endfor %}.</p>{% endif %}
</section>

<section id="scores"><h2>Scores</h2>
<div class="scores">
{% for s in v.scores %}
  <div class="score {{ s.state }}">
    <h3>{{ s.name }}: <span class="verdict">{{ s.verdict }}</span></h3>
    <table><thead><tr><th>Item</th><th>Value used</th>{% if s.items and s.items[0][2] != "" %}<th>Points</th>{% endif %}</tr></thead><tbody>
    {% for item, value, pts in s.items %}<tr><td>{{ item }}</td><td>{{ value }}</td>{% if pts != "" %}<td class="num">{{ pts }}</td>{% endif %}</tr>{% endfor %}
    </tbody></table>
    {% if s.missing %}<p class="missing">Missing: {{ s.missing }}</p>{% endif %}
    {% if s.rule %}<p class="small">{{ s.rule }}</p>{% endif %}
  </div>
{% endfor %}
</div></section>

<section id="trends"><h2>Trends (last {{ v.trend_days }} days)</h2>
<p class="small">Each dot is one result (values as the lab reported them are listed under each chart). Dashed lines are decision thresholds.{% if v.doses %} Triangles under the time axis mark anticoagulant doses given.{% endif %}</p>
<div class="charts">
{% for c in v.charts %}
  <figure class="trend" id="trend-{{ c.key }}">
    <figcaption><strong>{{ c.title }}</strong> — latest: {{ c.latest }}</figcaption>
    {{ c.svg }}
    {% if c.rows %}<details><summary>{{ c.count }} result{{ "s" if c.count != 1 }}</summary><table class="compact"><tbody>{% for t, s in c.rows %}<tr><td>{{ t }}</td><td>{{ s }}</td></tr>{% endfor %}</tbody></table></details>{% endif %}
  </figure>
{% endfor %}
</div>
{% if v.doses %}<details><summary>Anticoagulant doses given ({{ v.doses|length }})</summary><table class="compact"><tbody>{% for t, d in v.doses %}<tr><td>{{ t }}</td><td>{{ d }}</td></tr>{% endfor %}</tbody></table></details>{% endif %}
</section>

<section id="safety"><h2>Safety checks</h2>
<div class="two">
<div><h3>Contraindications</h3><ul class="checks">{% for text, state, word in v.safety.contraindications %}<li class="{{ state }}"><span class="mark"></span>{{ text }}: <strong>{{ word }}</strong></li>{% endfor %}</ul></div>
<div><h3>Cautions (block doses above prophylaxis)</h3><ul class="checks">{% for text, state, word in v.safety.cautions %}<li class="{{ state }}"><span class="mark"></span>{{ text }}: <strong>{{ word }}</strong></li>{% endfor %}</ul></div>
</div>
<p class="small">"None recorded" means no record was found in the EHR data read; it does not rule the condition out.</p>
</section>

<section id="inputs"><h2>Inputs</h2>
<div class="scroll"><table class="inputs"><thead><tr><th>Input</th><th>Value as reported</th><th>Date (age)</th><th>Source</th></tr></thead><tbody>
{% for r in v.inputs + v.flags %}<tr><td>{{ r.name }}</td><td>{{ r.value }}{% if r.canonical %} <span class="small">({{ r.canonical }})</span>{% endif %}</td><td>{{ r.date }}{% if r.age != "—" %} <span class="age">({{ r.age }})</span>{% endif %}</td><td>{{ r.source }}</td></tr>{% endfor %}
</tbody></table></div>
{% if v.rejected %}<h3>Values that could not be used</h3><ul>{% for name, why in v.rejected %}<li>{{ name }}: {{ why }}</li>{% endfor %}</ul>{% endif %}
{% if v.problems %}<h3>Data that could not be read</h3><ul>{% for key, why in v.problems %}<li>{{ key }}: {{ why }}</li>{% endfor %}</ul>{% endif %}
</section>

<section id="sources"><h2>Sources</h2><ol class="sources">
{% for label, url, kind in v.sources %}<li>{% if url %}<a href="{{ url }}" rel="noopener noreferrer" target="_blank">{{ label }}</a>{% if kind == "search" %} <span class="small">(search link)</span>{% endif %}{% else %}{{ label }} <span class="small">(no public link)</span>{% endif %}</li>{% endfor %}
</ol></section>
<p class="disclaimer">Decision support only: check against the patient and local protocol before ordering.</p>
</main></body></html>
""")

MESSAGE = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{ title }}</title><link rel="stylesheet" href="{{ css }}"><link rel="icon" href="{{ css[:-8] }}icon.svg"></head>
<body><main class="message"><h1>{{ title }}</h1><p>{{ text }}</p>
{% if hint %}<p class="small">{{ hint }}</p>{% endif %}</main></body></html>
""")


def render_page(view: dict, css: str) -> str:
    return PAGE.render(v=view, css=css)


def render_message(title: str, text: str, css: str, hint: str = "") -> str:
    return MESSAGE.render(title=title, text=text, hint=hint, css=css)


CSS = """
:root{--fg:#1d2430;--muted:#5a6472;--line:#d5dae1;--bg:#fff;--soft:#f4f6f9;--ok:#1f6f43;--alarm:#a4161a;--warn:#8a5a00;--accent:#0b5cad}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
.banner{padding:12px 20px;border-bottom:1px solid var(--line);background:var(--soft)}
h1{font-size:20px;margin:0 0 2px}h2{font-size:17px;margin:18px 0 8px}h3{font-size:15px;margin:4px 0 6px}
.who{margin:2px 0;font-size:16px}.meta,.small{color:var(--muted);font-size:13px;margin:4px 0}
.warn{color:var(--warn);font-weight:600;margin:4px 0}
.toc{padding:6px 20px;border-bottom:1px solid var(--line);font-size:13px}.toc a{margin-right:12px;color:var(--accent)}
main{padding:0 20px 24px;max-width:1280px}
.rec{border-left:6px solid var(--ok);background:#eef7f1;padding:8px 14px;margin-top:14px}
.rec.alarm{border-left-color:var(--alarm);background:#fbeeee}
.rec h2{margin:4px 0 6px}.rec p{margin:5px 0}.action{font-weight:600}
.tag{display:inline-block;font-size:12px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.03em;margin-right:4px}
.signal{color:var(--muted)}
.scores{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px}
.score{border:1px solid var(--line);border-top:4px solid var(--line);padding:8px 10px;border-radius:4px}
.score.positive{border-top-color:var(--alarm)}.score.negative{border-top-color:var(--ok)}.score.unknown{border-top-color:var(--warn)}
.verdict{font-weight:700}.missing{color:var(--warn);font-size:13px;margin:6px 0 0}
table{border-collapse:collapse;width:100%;font-size:13.5px}th,td{text-align:left;padding:3px 6px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--soft);font-weight:600}.num{text-align:right;white-space:nowrap}
.scroll{overflow-x:auto}.age{color:var(--muted);white-space:nowrap}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:10px 16px}
.trend{margin:0;border:1px solid var(--line);border-radius:4px;padding:6px 8px}
.trend figcaption{font-size:14px;margin-bottom:2px}
svg.chart{width:100%;height:auto;display:block}
.chart text{font:11px system-ui,sans-serif;fill:var(--muted)}
.chart .grid{stroke:#eceff3;stroke-width:1}.chart .xtick{stroke:#f1f3f6;stroke-width:1}.chart .axis{stroke:#9aa3ae;stroke-width:1}
.chart .ref{stroke:#6b7785;stroke-width:1.2;stroke-dasharray:5 4}.chart .alarm{stroke:var(--alarm);stroke-width:1.4;stroke-dasharray:6 3}
.chart .reflab{fill:#4b5563;font-weight:600}.chart .alarmlab{fill:var(--alarm)}
.chart .series{fill:none;stroke:var(--accent);stroke-width:2}
.chart .pt{fill:var(--accent);stroke:#fff;stroke-width:1.5}.chart .pt.bound{fill:#fff;stroke:var(--accent);stroke-width:2}
.chart .lastlab{fill:var(--fg);font-weight:700;font-size:12px}
.chart .dose{fill:#7b3fa0}.chart .doselab{fill:#7b3fa0}.chart .empty{font-size:13px}
details{margin:4px 0;font-size:13px}summary{cursor:pointer;color:var(--accent)}
.compact td{padding:2px 6px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.checks{list-style:none;padding:0;margin:0}.checks li{padding:3px 0 3px 22px;position:relative;font-size:14px}
.checks .mark{position:absolute;left:2px;top:8px;width:11px;height:11px;border-radius:50%;background:#9aa3ae}
.checks .present .mark{background:var(--alarm)}.checks .absent .mark{background:var(--ok)}.checks .unknown .mark{background:var(--warn)}
.checks .present{color:var(--alarm)}.checks .unknown strong{color:var(--warn)}
.sources{font-size:13.5px;padding-left:22px}.sources a{color:var(--accent)}
.disclaimer{font-style:italic;color:var(--muted);font-size:13px;margin-top:18px}
.message{max-width:640px;margin:40px auto;padding:0 20px}
@media (max-width:760px){body{font-size:14px}.banner,main,.toc{padding-left:10px;padding-right:10px}
.two{grid-template-columns:1fr}.charts{grid-template-columns:1fr}.scores{grid-template-columns:1fr}
.chart text{font-size:16px}.chart .lastlab{font-size:17px}.chart .unit{font-size:15px}}
"""

ICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" '
        'fill="#0b5cad"/><path d="M4 9h2l1-3 2 6 1-3h2" fill="none" stroke="#fff" stroke-width="1.5"/></svg>')
