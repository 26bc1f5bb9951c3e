"""Synthetic radiology reports that fit the ordered exam.

A report is assembled from the exam's own metadata (modality, body part, laterality, contrast), never
from its description text: a knee MR talks about menisci and cruciate ligaments of the ordered side,
a chest radiograph about lungs, heart size and pleura, a mammogram ends with a BI-RADS assessment
category (ACR BI-RADS Atlas, 5th ed.). Most reports are normal; roughly one in four carries one or
two plausible abnormal findings, which then drive the impression.

Text is multi-line (``\\n`` separated); :mod:`generators.hl7` encodes the line breaks as ``\\.br\\``
in an FT OBX (HL7 2.5.1 ch. 2.7.6).
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass

from generators.terms import BODY_PARTS, Contrast, Laterality, Modality
from generators.types import Order, PersonName, Provider

# Radiologists who sign reports. Like the referring roster in generators.identity: a fixed, small
# group whose names exercise escaping (apostrophe, non-ASCII, hyphen).
RADIOLOGIST_ROSTER: tuple[Provider, ...] = (
    Provider("1902837465", PersonName("CHEN", "LINDA", "", "", "MD")),
    Provider("1827364509", PersonName("MÜLLER", "STEFAN", "J", "", "MD")),
    Provider("1736450982", PersonName("O'CONNOR", "AOIFE", "", "", "MD")),
    Provider("1645098273", PersonName("PATEL", "RAVI", "K", "", "MD")),
    Provider("1554321098", PersonName("GARCÍA-LÓPEZ", "MARTA", "", "", "MD")),
    Provider("1463829104", PersonName("WASHINGTON", "DENISE", "L", "", "DO")),
)

# Probability that a report carries abnormal findings at all, and the share of those with two.
P_ABNORMAL = 0.25
P_SECOND_ABNORMAL = 0.3


@dataclass(frozen=True, slots=True)
class Report:
    """A signed radiology report (HL7 ORU^R01 OBX per section, OBR-25 / OBX-11 result status)."""

    findings: str
    impression: str
    radiologist: Provider
    signed_at: dt.datetime
    status: str = "F"  # HL7 table 0085/0123: F = final


@dataclass(frozen=True, slots=True)
class Abnormal:
    """An abnormal variant of one observation: the findings sentence and its impression line."""

    finding: str
    impression: str


@dataclass(frozen=True, slots=True)
class Observation:
    """One line of the findings: a normal sentence and the abnormal variants that may replace it."""

    label: str
    normal: str
    abnormal: tuple[Abnormal, ...] = ()


@dataclass(frozen=True, slots=True)
class Template:
    """How to report one kind of exam; fills ``{side} {part} {side_part} {contrast} {views}``."""

    observations: tuple[Observation, ...]
    technique: str = ""
    normal_impressions: tuple[str, ...] = ("No acute abnormality.",)


def _o(label: str, normal: str, *abnormal: tuple[str, str]) -> Observation:
    return Observation(label, normal, tuple(Abnormal(f, i) for f, i in abnormal))


# --- templates -------------------------------------------------------------------------------------
# Lateral templates mention the side only through {side}; they never contain the words "right" or
# "left" themselves, so a report can never name the wrong side.

_MR_KNEE = Template(
    technique="Multiplanar multisequence MR imaging of the {side} knee{contrast}.",
    observations=(
        _o("Medial meniscus", "Intact without tear.",
           ("Oblique tear of the posterior horn extending to the inferior articular surface.",
            "Tear of the posterior horn of the medial meniscus of the {side} knee.")),
        _o("Lateral meniscus", "Intact without tear.",
           ("Radial tear of the body.", "Radial tear of the lateral meniscus body, {side} knee.")),
        _o("Cruciate ligaments", "The anterior and posterior cruciate ligaments are intact.",
           ("Complete disruption of the anterior cruciate ligament with pivot-shift bone contusions.",
            "Complete tear of the anterior cruciate ligament of the {side} knee.")),
        _o("Collateral ligaments", "The medial and lateral collateral ligament complexes are intact.",
           ("Periligamentous edema about the medial collateral ligament, consistent with a low-grade sprain.",
            "Grade 1 sprain of the medial collateral ligament, {side} knee.")),
        _o("Extensor mechanism", "Quadriceps and patellar tendons are intact."),
        _o("Articular cartilage", "Preserved in all compartments.",
           ("Partial-thickness chondral fissuring of the medial femoral condyle.",
            "Mild medial compartment chondrosis, {side} knee.")),
        _o("Bone marrow", "Normal marrow signal. No fracture.",
           ("Subchondral bone marrow edema in the medial tibial plateau.",
            "Medial tibial plateau bone marrow edema, {side} knee; no fracture line.")),
        _o("Joint fluid", "No joint effusion. No Baker cyst.",
           ("Moderate joint effusion and a small Baker cyst.", "Moderate effusion and Baker cyst, {side} knee.")),
    ),
    normal_impressions=("Normal MRI of the {side} knee.", "No internal derangement of the {side} knee."),
)

_MR_SHOULDER = Template(
    technique="Multiplanar multisequence MR imaging of the {side} shoulder{contrast}.",
    observations=(
        _o("Rotator cuff", "The supraspinatus, infraspinatus, subscapularis and teres minor tendons are intact.",
           ("Full-thickness tear of the distal supraspinatus tendon measuring 9 mm in AP dimension.",
            "Full-thickness supraspinatus tendon tear, {side} shoulder.")),
        _o("Labrum", "The glenoid labrum is intact.",
           ("Tear of the superior labrum extending anterior to posterior.", "SLAP tear, {side} shoulder.")),
        _o("Biceps tendon", "The long head of the biceps tendon is normally located in the bicipital groove."),
        _o("Acromioclavicular joint", "Unremarkable.",
           ("Moderate hypertrophic degenerative change with inferior osteophytes.",
            "Acromioclavicular joint osteoarthritis, {side} shoulder.")),
        _o("Bone marrow", "Normal marrow signal. No fracture."),
        _o("Joint fluid", "No glenohumeral joint effusion. No subacromial-subdeltoid bursal fluid."),
    ),
    normal_impressions=("Normal MRI of the {side} shoulder.",),
)

_MR_JOINT = Template(
    technique="Multiplanar multisequence MR imaging of the {side} {part}{contrast}.",
    observations=(
        _o("Tendons", "The visualized tendons are intact with normal signal.",
           ("Tendinosis with a small interstitial split tear.", "Tendinosis with interstitial tear, {side} {part}.")),
        _o("Ligaments", "The visualized ligaments are intact."),
        _o("Cartilage", "Articular cartilage is preserved."),
        _o("Bone marrow", "Normal marrow signal. No fracture.",
           ("Nondisplaced fracture line with surrounding marrow edema.",
            "Occult nondisplaced fracture, {side} {part}.")),
        _o("Soft tissues", "No mass or fluid collection."),
    ),
    normal_impressions=("Normal MRI of the {side} {part}.",),
)

_MR_BRAIN = Template(
    technique="Multiplanar multisequence MR imaging of the brain{contrast}.",
    observations=(
        _o("Parenchyma", "Normal gray-white matter differentiation.",
           ("Scattered punctate T2/FLAIR hyperintensities in the periventricular and subcortical white matter.",
            "Mild chronic small vessel ischemic change.")),
        _o("Diffusion", "No restricted diffusion to suggest acute infarct.",
           ("Focus of restricted diffusion in the posterior limb of the internal capsule.",
            "Small acute lacunar infarct in the internal capsule.")),
        _o("Ventricles", "Ventricles and sulci are normal in size for age."),
        _o("Extra-axial spaces", "No extra-axial collection. No midline shift."),
        _o("Vascular flow voids", "Normal major intracranial flow voids."),
        _o("Orbits and sinuses", "Unremarkable orbits. Paranasal sinuses are clear.",
           ("Mucosal thickening of the maxillary sinuses.", "Incidental maxillary sinus mucosal disease.")),
    ),
    normal_impressions=("Normal MRI of the brain.", "No acute intracranial abnormality."),
)

_MR_SPINE = Template(
    technique="Multiplanar multisequence MR imaging of the {part}{contrast}.",
    observations=(
        _o("Alignment", "Normal alignment.",
           ("Grade 1 anterolisthesis at the lowest mobile level.", "Grade 1 degenerative anterolisthesis.")),
        _o("Vertebral bodies", "Vertebral body heights and marrow signal are preserved."),
        _o("Spinal cord / conus", "Normal caliber and signal."),
        _o("Intervertebral discs", "Disc heights and hydration are preserved. No disc herniation.",
           ("Broad-based disc protrusion with mild central canal narrowing and abutment of the traversing nerve root.",
            "Disc protrusion with mild canal stenosis and nerve root abutment.")),
        _o("Neural foramina", "Patent.",
           ("Moderate foraminal narrowing at the lowest level due to facet hypertrophy.",
            "Moderate foraminal stenosis.")),
    ),
    normal_impressions=("Normal MRI of the {part}.",),
)

_MR_GENERIC = Template(
    technique="Multiplanar multisequence MR imaging of the {side_part}{contrast}.",
    observations=(
        _o("Organs", "The imaged structures are normal in size and signal.",
           ("A 1.2 cm T2 hyperintense lesion without enhancement, most consistent with a simple cyst.",
            "1.2 cm simple cyst, benign; no follow-up needed.")),
        _o("Soft tissues", "No mass or abnormal fluid collection."),
        _o("Bones", "Normal marrow signal."),
    ),
    normal_impressions=("Normal MRI of the {side_part}.",),
)

_CT_HEAD = Template(
    technique="Axial CT images of the head{contrast}.",
    observations=(
        _o("Brain",
           "No intracranial hemorrhage, mass effect or midline shift. Gray-white differentiation is preserved.",
           ("Small acute subdural hematoma along the convexity measuring 4 mm without midline shift.",
            "Small acute subdural hematoma without mass effect; neurosurgical correlation advised.")),
        _o("Ventricles", "Normal size and configuration.",
           ("Periventricular white matter hypodensities.", "Chronic small vessel ischemic change.")),
        _o("Calvarium", "No fracture."),
        _o("Sinuses and mastoids", "Clear."),
    ),
    normal_impressions=("No acute intracranial abnormality.",),
)

_CT_CHEST = Template(
    technique="Axial CT images of the chest{contrast} with multiplanar reformats.",
    observations=(
        _o("Lungs", "Clear lungs without consolidation or suspicious nodule.",
           ("A 6 mm solid nodule in the lower lobe.",
            "6 mm solid pulmonary nodule; follow-up per Fleischner Society guidelines."),
           ("Patchy consolidation in the dependent lower lobes.", "Lower lobe consolidation, likely pneumonia.")),
        _o("Pleura", "No pleural effusion or pneumothorax.",
           ("Small bilateral pleural effusions.", "Small bilateral pleural effusions.")),
        _o("Mediastinum", "No lymphadenopathy. Heart size normal. No pericardial effusion."),
        _o("Airways", "Central airways are patent."),
        _o("Bones", "No aggressive osseous lesion."),
    ),
    normal_impressions=("No acute cardiopulmonary abnormality.",),
)

_CT_ABDOMEN = Template(
    technique="Axial CT images of the {part}{contrast} with coronal reformats.",
    observations=(
        _o("Liver", "Normal size and attenuation. No focal lesion.",
           ("Diffuse hypoattenuation of the liver parenchyma.", "Hepatic steatosis.")),
        _o("Gallbladder and bile ducts", "Gallbladder is unremarkable. No biliary dilatation.",
           ("Calcified gallstones without gallbladder wall thickening.", "Cholelithiasis without cholecystitis.")),
        _o("Pancreas", "Normal."),
        _o("Spleen", "Normal size."),
        _o("Adrenal glands", "Normal."),
        _o("Kidneys", "Normal size and enhancement. No hydronephrosis or calculus.",
           ("A 5 mm nonobstructing calculus in the lower pole collecting system.", "Nonobstructing nephrolithiasis.")),
        _o("Bowel", "No bowel obstruction or wall thickening. The appendix is normal.",
           ("Dilated appendix measuring 11 mm with periappendiceal fat stranding.", "Acute appendicitis.")),
        _o("Bladder and pelvic organs", "Unremarkable."),
        _o("Lymph nodes", "No lymphadenopathy."),
        _o("Vessels", "Normal caliber abdominal aorta."),
        _o("Bones", "No aggressive osseous lesion. Mild degenerative change of the lumbar spine."),
    ),
    normal_impressions=("No acute abnormality in the {part}.",),
)

_CT_GENERIC = Template(
    technique="Axial CT images of the {side_part}{contrast} with multiplanar reformats.",
    observations=(
        _o("Bones", "No fracture or aggressive osseous lesion.",
           ("Nondisplaced cortical fracture.", "Nondisplaced fracture of the {side_part}.")),
        _o("Joints and alignment", "Normal alignment."),
        _o("Soft tissues", "No mass, fluid collection or soft tissue gas."),
    ),
    normal_impressions=("No acute abnormality of the {side_part}.",),
)

_XR_CHEST = Template(
    technique="{views} views of the chest.",
    observations=(
        _o("Lungs", "Clear. No focal consolidation.",
           ("Patchy airspace opacity in the lower lung zone.", "Lower lobe airspace opacity, pneumonia not excluded."),
           ("Hyperinflated lungs with flattened hemidiaphragms.", "Hyperinflation, consistent with COPD.")),
        _o("Heart size", "The cardiomediastinal silhouette is normal in size.",
           ("The cardiac silhouette is enlarged.", "Cardiomegaly.")),
        _o("Pleura", "No pleural effusion or pneumothorax.",
           ("Blunting of the costophrenic angles.", "Small bilateral pleural effusions.")),
        _o("Bones", "No acute osseous abnormality."),
    ),
    normal_impressions=("No acute cardiopulmonary process.",),
)

_XR_EXTREMITY = Template(
    technique="{views} views of the {side_part}.",
    observations=(
        _o("Fracture", "No acute fracture.",
           ("Nondisplaced transverse fracture with minimal cortical step-off.",
            "Nondisplaced fracture of the {side_part}.")),
        _o("Alignment", "Normal alignment. No dislocation."),
        _o("Joint spaces", "Joint spaces are preserved.",
           ("Joint space narrowing with marginal osteophytes.", "Moderate osteoarthritis of the {side_part}.")),
        _o("Soft tissues", "Unremarkable.",
           ("Soft tissue swelling without radiopaque foreign body.", "Soft tissue swelling of the {side_part}.")),
    ),
    normal_impressions=("No acute osseous abnormality of the {side_part}.",),
)

_XR_SPINE = Template(
    technique="{views} views of the {part}.",
    observations=(
        _o("Alignment", "Normal alignment."),
        _o("Vertebral bodies", "Vertebral body heights are maintained. No fracture.",
           ("Mild anterior wedging of a single vertebral body, age indeterminate.",
            "Mild compression deformity, age indeterminate; correlate with point tenderness.")),
        _o("Disc spaces", "Disc spaces are preserved.",
           ("Multilevel disc space narrowing with endplate osteophytes.", "Multilevel degenerative disc disease.")),
        _o("Soft tissues", "Unremarkable."),
    ),
    normal_impressions=("No acute osseous abnormality of the {part}.",),
)

_XR_GENERIC = Template(
    technique="{views} views of the {side_part}.",
    observations=(
        _o("Bones", "No acute osseous abnormality."),
        _o("Soft tissues", "Unremarkable.",
           ("Nonspecific soft tissue calcifications.", "Nonspecific soft tissue calcifications.")),
    ),
    normal_impressions=("No acute abnormality.",),
)

_US_ABDOMEN = Template(
    technique="Real-time grayscale and color Doppler ultrasound of the abdomen.",
    observations=(
        _o("Liver", "Normal size and echotexture. No focal lesion. Hepatopetal portal venous flow.",
           ("Diffusely increased echogenicity of the liver.", "Hepatic steatosis.")),
        _o("Gallbladder", "No gallstones, wall thickening or pericholecystic fluid. Negative sonographic Murphy sign.",
           ("Multiple mobile shadowing gallstones. No wall thickening.",
            "Cholelithiasis without sonographic evidence of cholecystitis.")),
        _o("Common bile duct", "Measures 4 mm, within normal limits."),
        _o("Pancreas", "Visualized portions are unremarkable."),
        _o("Spleen", "Normal size, measuring 10 cm."),
        _o("Kidneys", "Normal size and echogenicity bilaterally. No hydronephrosis.",
           ("A 2.1 cm anechoic cyst with imperceptible wall in the upper pole.",
            "Simple renal cyst (Bosniak I), benign.")),
        _o("Aorta", "Normal caliber."),
    ),
    normal_impressions=("Normal abdominal ultrasound.",),
)

_US_GENERIC = Template(
    technique="Real-time grayscale and color Doppler ultrasound of the {side_part}.",
    observations=(
        _o("Parenchyma", "Normal size and echotexture.",
           ("A 1.4 cm well-circumscribed hypoechoic nodule.",
            "1.4 cm hypoechoic nodule of the {side_part}; follow-up recommended.")),
        _o("Vascularity", "Normal color Doppler flow."),
        _o("Fluid", "No abnormal fluid collection."),
    ),
    normal_impressions=("Normal ultrasound of the {side_part}.",),
)

_NM_BONE = Template(
    technique="Whole body anterior and posterior planar images obtained 3 hours after intravenous "
              "administration of 740 MBq (20 mCi) Tc-99m MDP.",
    observations=(
        _o("Skeletal uptake",
           "Physiologic, symmetric radiotracer distribution throughout the axial and appendicular skeleton.",
           ("Multiple foci of increased uptake in the thoracic spine, ribs and pelvis.",
            "Multiple foci of increased osseous uptake, suspicious for osseous metastatic disease."),
           ("Increased uptake in both knees and the lower lumbar facets in a degenerative pattern.",
            "Degenerative uptake; no scintigraphic evidence of osseous metastatic disease.")),
        _o("Kidneys and bladder", "Normal renal and bladder activity."),
        _o("Soft tissues", "No abnormal soft tissue uptake."),
    ),
    normal_impressions=("No scintigraphic evidence of osseous metastatic disease.",),
)

_NM_GENERIC = Template(
    technique="Planar and SPECT scintigraphic imaging of the {part}.",
    observations=(
        _o("Radiotracer distribution", "Physiologic radiotracer distribution.",
           ("Focal area of increased radiotracer uptake.", "Focal increased uptake, further evaluation suggested.")),
        _o("Background", "Normal background activity."),
    ),
    normal_impressions=("Normal scintigraphic study of the {part}.",),
)

_PET_CT = Template(
    technique="PET from the skull base to the mid-thighs 60 minutes after intravenous radiotracer, with a "
              "low-dose CT for attenuation correction and localisation; SUVs normalised to body weight.",
    observations=(
        _o("Head and neck", "Physiologic uptake in the brain, salivary glands and lymphoid tissue."),
        _o("Chest", "No hypermetabolic pulmonary nodule or thoracic lymph node.",
           ("Hypermetabolic pulmonary nodule and mediastinal nodes, SUVmax 9.",
            "Hypermetabolic disease in the chest, suspicious for malignancy.")),
        _o("Abdomen and pelvis", "Physiologic activity in the liver, kidneys, bowel and bladder.",
           ("Hypermetabolic retroperitoneal and pelvic nodes, SUVmax 7.",
            "Nodal disease in the abdomen and pelvis.")),
        _o("Musculoskeletal", "No suspicious osseous uptake."),
    ),
    normal_impressions=("No scintigraphic evidence of active malignant disease.",),
)

_XA_ANGIO = Template(
    technique="Selective catheter angiography of the {side_part}: digital subtraction runs after intra-arterial "
              "iodinated contrast.",
    observations=(
        _o("Arteries", "Normal caliber and course of the opacified arteries without stenosis or occlusion.",
           ("Focal 70% stenosis of the proximal vessel with post-stenotic dilatation.",
            "Hemodynamically significant focal stenosis of the {side_part} arteries."),
           ("Saccular aneurysm 5 mm arising at a branch point.", "5 mm saccular aneurysm.")),
        _o("Runoff", "Prompt antegrade filling of the distal branches."),
        _o("Venous phase", "Normal venous drainage."),
    ),
    normal_impressions=("Normal angiogram of the {side_part}.",),
)

_RF_FLUORO = Template(
    technique="Fluoroscopic examination of the {part} with positive contrast; cine runs recorded.",
    observations=(
        _o("Contrast transit", "Contrast passes freely without obstruction or delay.",
           ("Smooth tapered narrowing with delayed transit of contrast.",
            "Stricture of the {part}; endoscopic correlation recommended."),
           ("Retrograde flow of contrast during the run.", "Reflux demonstrated fluoroscopically.")),
        _o("Mucosa and wall", "Normal contour and distensibility."),
        _o("Leak", "No extravasation of contrast."),
    ),
    normal_impressions=("Normal fluoroscopic examination of the {part}.",),
)

_SPINE_PARTS = frozenset({"CSPINE", "TSPINE", "LSPINE", "SPINE"})
_HEAD_PARTS = frozenset({"HEAD", "BRAIN", "SKULL"})
_ABDOMEN_PARTS = frozenset({"ABDOMEN", "ABDOMENPELVIS", "PELVIS", "CHESTABDPELVIS", "LIVER", "KIDNEY"})

# MG: BI-RADS assessment categories (ACR BI-RADS Atlas 5th ed.) with their wording, and the screening /
# diagnostic mix. Breast composition categories a-d.
_BIRADS_TEXT: dict[int, str] = {
    0: "Incomplete - need additional imaging evaluation",
    1: "Negative",
    2: "Benign",
    3: "Probably benign",
    4: "Suspicious",
    5: "Highly suggestive of malignancy",
}
_BIRADS_WEIGHTS: tuple[int, ...] = (9, 62, 24, 3, 1, 1)  # categories 0..5 in a screening population
_DENSITY: tuple[str, ...] = (
    "a. The breasts are almost entirely fatty.",
    "b. There are scattered areas of fibroglandular density.",
    "c. The breasts are heterogeneously dense, which may obscure small masses.",
    "d. The breasts are extremely dense, which lowers the sensitivity of mammography.",
)
_MG_FINDING: dict[int, str] = {
    0: "A 9 mm focal asymmetry in the upper outer quadrant of the {side} breast, seen on the MLO view only.",
    2: "Stable benign-appearing calcifications in the {side} breast.",
    3: "A 7 mm circumscribed oval mass in the {side} breast at 2 o'clock, likely a fibroadenoma.",
    4: "Grouped amorphous calcifications spanning 8 mm in the {side} breast at 10 o'clock.",
    5: "A 14 mm irregular spiculated mass in the {side} breast at 11 o'clock with associated architectural distortion.",
}
_MG_RECOMMENDATION: dict[int, str] = {
    0: "Diagnostic mammography and possible ultrasound of the {side} breast.",
    1: "Routine annual screening mammography.",
    2: "Routine annual screening mammography.",
    3: "Short-interval follow-up diagnostic mammography of the {side} breast in 6 months.",
    4: "Stereotactic biopsy of the {side} breast calcifications.",
    5: "Ultrasound-guided core biopsy of the {side} breast mass.",
}


def _side_word(laterality: Laterality) -> str:
    return {Laterality.RIGHT: "right", Laterality.LEFT: "left", Laterality.BILATERAL: "bilateral"}.get(laterality, "")


def _part_word(body_part: str) -> str:
    return BODY_PARTS.get(body_part, body_part.replace("_", " ")).lower()


def _contrast_phrase(order: Order) -> str:
    exam = order.exam
    if exam.contrast is Contrast.NONE:
        return " without intravenous contrast"
    agent = f" ({exam.contrast_agent})" if exam.contrast_agent else ""
    if exam.contrast is Contrast.WITHOUT_THEN_WITH:
        return f" before and after intravenous contrast{agent}"
    return f" with intravenous contrast{agent}"


def _template(order: Order) -> Template:
    modality, part, lateral = order.modality, order.body_part, order.laterality is not Laterality.NONE
    if modality is Modality.MR:
        if part == "KNEE":
            return _MR_KNEE
        if part == "SHOULDER":
            return _MR_SHOULDER
        if part in _HEAD_PARTS:
            return _MR_BRAIN
        if part in _SPINE_PARTS:
            return _MR_SPINE
        # Joint anatomy only for paired musculoskeletal parts; breast MR and organs get the generic text.
        return _MR_JOINT if lateral and part != "BREAST" else _MR_GENERIC
    if modality is Modality.CT:
        if part in _HEAD_PARTS:
            return _CT_HEAD
        if part == "CHEST":
            return _CT_CHEST
        if part in _ABDOMEN_PARTS and not lateral:
            return _CT_ABDOMEN
        return _CT_GENERIC
    if modality in (Modality.CR, Modality.DX):
        if part == "CHEST":
            return _XR_CHEST
        if part in _SPINE_PARTS:
            return _XR_SPINE
        return _XR_EXTREMITY if lateral else _XR_GENERIC
    if modality is Modality.US:
        if part == "ABDOMEN" and not lateral:
            return _US_ABDOMEN
        return _US_GENERIC
    if modality is Modality.PT:
        return _PET_CT
    if modality is Modality.NM:
        return _NM_BONE if part in ("WHOLEBODY", "BONE") else _NM_GENERIC
    if modality is Modality.XA:
        return _XA_ANGIO
    if modality is Modality.RF:
        return _RF_FLUORO
    raise ValueError(f"No report template for modality {modality}.")


def _fill(text: str, values: dict[str, str]) -> str:
    out = re.sub(" {2,}", " ", text.format(**values))  # an empty {side} must not leave a double space
    return out[0].upper() + out[1:] if out else out


def _numbered(lines: list[str]) -> str:
    if len(lines) == 1:
        return lines[0]
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))


def _templated_report(order: Order, rng: random.Random) -> tuple[str, str]:
    template = _template(order)
    side = _side_word(order.laterality)
    part = _part_word(order.body_part)
    views = sum(1 for s in order.exam.series) or 1
    values = {
        "side": side,
        "part": part,
        "side_part": f"{side} {part}".strip(),
        "contrast": _contrast_phrase(order),
        "views": str(views) if views > 1 else "Single",
    }
    candidates = [i for i, obs in enumerate(template.observations) if obs.abnormal]
    chosen: dict[int, Abnormal] = {}
    if candidates and rng.random() < P_ABNORMAL:
        count = 2 if len(candidates) > 1 and rng.random() < P_SECOND_ABNORMAL else 1
        for index in sorted(rng.sample(candidates, count)):
            chosen[index] = rng.choice(template.observations[index].abnormal)
    lines = []
    if template.technique:
        lines.append("TECHNIQUE: " + _fill(template.technique, values))
    lines.append("COMPARISON: None.")
    lines.append("FINDINGS:")
    for index, obs in enumerate(template.observations):
        sentence = chosen[index].finding if index in chosen else obs.normal
        lines.append(f"{obs.label}: {_fill(sentence, values)}")
    if chosen:
        impression = _numbered([_fill(chosen[i].impression, values) for i in sorted(chosen)])
    else:
        impression = _fill(rng.choice(template.normal_impressions), values)
    return "\n".join(lines), impression


def _mammography_report(order: Order, rng: random.Random) -> tuple[str, str]:
    """Screening/diagnostic mammogram with ACR breast composition and a BI-RADS category (0-5)."""
    laterality = order.laterality
    if laterality is Laterality.BILATERAL or laterality is Laterality.NONE:
        sides = ("right", "left")
        scope = "both breasts"
    else:
        sides = (_side_word(laterality),)
        scope = f"the {sides[0]} breast"
    category = rng.choices(range(6), _BIRADS_WEIGHTS)[0]
    density = rng.choice(_DENSITY)
    abnormal_side = rng.choice(sides)
    views = ", ".join(s.view_position for s in order.exam.series if s.view_position) or "standard"
    lines = [
        f"TECHNIQUE: Digital mammography of {scope} ({views} views).",
        "COMPARISON: None.",
        "FINDINGS:",
        f"Breast composition: {density}",
    ]
    for side in sides:
        if category in _MG_FINDING and side == abnormal_side:
            lines.append(f"{side.capitalize()} breast: " + _MG_FINDING[category].format(side=side))
        else:
            lines.append(f"{side.capitalize()} breast: No suspicious mass, calcification or architectural distortion.")
    lines.append("No suspicious axillary lymph nodes.")
    recommendation = _MG_RECOMMENDATION[category].format(side=abnormal_side)
    impression = (
        f"BI-RADS Category {category}: {_BIRADS_TEXT[category]}.\n"
        f"Recommendation: {recommendation}"
    )
    return "\n".join(lines), impression


def build_report(order: Order, rng: random.Random, *, now: dt.datetime) -> Report:
    """A final report for ``order`` signed at ``now`` by a radiologist drawn from :data:`RADIOLOGIST_ROSTER`.

    Findings and impression come from the exam's modality, body part, laterality and contrast (never
    from its free-text description). Lateral exams name only the ordered side; mammograms carry a
    BI-RADS assessment category. The same ``rng`` state gives the same report.
    """
    if order.modality is Modality.MG:
        findings, impression = _mammography_report(order, rng)
    else:
        findings, impression = _templated_report(order, rng)
    return Report(
        findings=findings,
        impression=impression,
        radiologist=rng.choice(RADIOLOGIST_ROSTER),
        signed_at=now,
        status="F",
    )
