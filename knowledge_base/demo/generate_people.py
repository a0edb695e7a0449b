"""Generate the DEMO departments.yaml and experts.yaml from hospitals.yaml.

Deterministic (fixed seed, no clock): running it twice gives byte-identical files.
Standard library + PyYAML only. All experts are fictional; names are drawn from
common surname and given-name pools, with a block list of well-known real people.

    python knowledge_base/demo/generate_people.py
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
HEADER = (
    "# DEMO DATA — fictional people, demo prices and phone numbers; not for clinical use."
    " / 演示数据\n"
)
SEED = 20261001

Record = dict[str, Any]

# slug: (name_zh, name_en, aliases, conditions_zh, conditions_en)
CATALOG: dict[str, tuple[str, str, list[str], list[str], list[str]]] = {
    # general hospital departments
    "cardiology": (
        "心内科",
        "Cardiology",
        ["心血管内科", "心脏科", "心脏内科", "心血管科", "cardiology", "heart"],
        ["高血压", "冠心病", "心律失常", "心力衰竭"],
        ["hypertension", "coronary heart disease", "arrhythmia", "heart failure"],
    ),
    "gastroenterology": (
        "消化内科",
        "Gastroenterology",
        ["消化科", "胃肠科", "肠胃科", "胃病科", "gastroenterology", "GI"],
        ["胃炎", "消化性溃疡", "肠易激综合征", "胃肠镜检查"],
        ["gastritis", "peptic ulcer", "irritable bowel syndrome", "endoscopy"],
    ),
    "respiratory": (
        "呼吸内科",
        "Respiratory Medicine",
        ["呼吸科", "肺病科", "呼吸与危重症医学科", "respiratory", "pulmonology"],
        ["慢阻肺", "哮喘", "肺炎", "肺结节"],
        ["COPD", "asthma", "pneumonia", "lung nodules"],
    ),
    "neurology": (
        "神经内科",
        "Neurology",
        ["神经科", "脑病科", "neurology"],
        ["脑卒中", "头痛", "癫痫", "帕金森病"],
        ["stroke", "headache", "epilepsy", "Parkinson's disease"],
    ),
    "endocrinology": (
        "内分泌科",
        "Endocrinology",
        ["内分泌代谢科", "糖尿病科", "甲状腺科", "endocrinology", "diabetes"],
        ["糖尿病", "甲状腺疾病", "骨质疏松", "肥胖"],
        ["diabetes", "thyroid disease", "osteoporosis", "obesity"],
    ),
    "orthopedics": (
        "骨科",
        "Orthopedics",
        ["骨外科", "关节外科", "脊柱外科", "orthopedics", "bone"],
        ["骨折", "颈椎病", "腰椎间盘突出", "关节炎"],
        ["fractures", "cervical spondylosis", "lumbar disc herniation", "arthritis"],
    ),
    "general-surgery": (
        "普外科",
        "General Surgery",
        ["普通外科", "外科", "general surgery"],
        ["胆囊结石", "疝气", "阑尾炎", "甲状腺结节"],
        ["gallstones", "hernia", "appendicitis", "thyroid nodules"],
    ),
    "obgyn": (
        "妇产科",
        "Obstetrics and Gynecology",
        ["妇科", "产科", "妇科门诊", "gynecology", "obstetrics", "OB/GYN"],
        ["月经不调", "妊娠保健", "子宫肌瘤", "妇科炎症"],
        ["menstrual disorders", "prenatal care", "uterine fibroids", "gynecological infections"],
    ),
    "pediatrics": (
        "儿科",
        "Pediatrics",
        ["小儿科", "儿内科", "儿童门诊", "pediatrics", "children"],
        ["小儿发热", "小儿咳嗽", "腹泻", "生长发育"],
        ["fever in children", "cough", "diarrhea", "growth and development"],
    ),
    "dermatology": (
        "皮肤科",
        "Dermatology",
        ["皮肤病科", "皮肤性病科", "dermatology", "skin"],
        ["湿疹", "痤疮", "荨麻疹", "银屑病"],
        ["eczema", "acne", "urticaria", "psoriasis"],
    ),
    "emergency": (
        "急诊科",
        "Emergency Department",
        ["急诊", "急诊室", "急诊内科", "emergency", "ER", "A&E"],
        ["急危重症", "急性胸痛", "外伤", "中毒"],
        ["critical illness", "acute chest pain", "trauma", "poisoning"],
    ),
    "ophthalmology": (
        "眼科",
        "Ophthalmology",
        ["眼科门诊", "眼睛科", "ophthalmology", "eye"],
        ["白内障", "青光眼", "干眼症", "眼底病"],
        ["cataract", "glaucoma", "dry eye", "retinal disease"],
    ),
    "ent": (
        "耳鼻喉科",
        "ENT (Otolaryngology)",
        ["耳鼻咽喉科", "五官科", "耳鼻喉头颈外科", "ENT", "otolaryngology"],
        ["鼻炎", "鼻窦炎", "咽喉炎", "中耳炎"],
        ["rhinitis", "sinusitis", "pharyngitis", "otitis media"],
    ),
    "urology": (
        "泌尿外科",
        "Urology",
        ["泌尿科", "男科", "urology"],
        ["前列腺增生", "泌尿系结石", "尿路感染", "泌尿系肿瘤"],
        [
            "benign prostatic hyperplasia",
            "urinary stones",
            "urinary tract infection",
            "urological tumours",
        ],
    ),
    "nephrology": (
        "肾脏内科",
        "Nephrology",
        ["肾内科", "肾病科", "透析中心", "nephrology", "kidney"],
        ["慢性肾病", "肾炎", "血液透析", "蛋白尿"],
        ["chronic kidney disease", "nephritis", "hemodialysis", "proteinuria"],
    ),
    "hematology": (
        "血液科",
        "Hematology",
        ["血液内科", "血液病科", "hematology", "blood"],
        ["贫血", "白血病", "淋巴瘤", "血小板减少"],
        ["anemia", "leukemia", "lymphoma", "thrombocytopenia"],
    ),
    "oncology": (
        "肿瘤科",
        "Oncology",
        ["肿瘤内科", "化疗科", "oncology", "cancer"],
        ["肺癌", "胃肠肿瘤", "化疗", "靶向治疗"],
        ["lung cancer", "gastrointestinal cancers", "chemotherapy", "targeted therapy"],
    ),
    "rehabilitation": (
        "康复医学科",
        "Rehabilitation Medicine",
        ["康复科", "理疗科", "rehabilitation", "physiotherapy"],
        ["中风后康复", "颈肩腰腿痛", "运动损伤", "术后康复"],
        [
            "post-stroke rehabilitation",
            "neck, shoulder and back pain",
            "sports injuries",
            "post-operative rehabilitation",
        ],
    ),
    "stomatology": (
        "口腔科",
        "Stomatology",
        ["牙科", "口腔门诊", "dentistry", "dental"],
        ["龋齿", "牙周病", "拔牙", "口腔黏膜病"],
        ["tooth decay", "periodontal disease", "tooth extraction", "oral mucosal disease"],
    ),
    "geriatrics": (
        "老年医学科",
        "Geriatrics",
        ["老年科", "老年病科", "geriatrics"],
        ["多病共存", "认知障碍", "跌倒风险", "营养不良"],
        ["multimorbidity", "cognitive impairment", "fall risk", "malnutrition"],
    ),
    "infectious": (
        "感染科",
        "Infectious Diseases",
        ["感染病科", "传染科", "肝炎门诊", "infectious diseases"],
        ["病毒性肝炎", "发热待查", "带状疱疹", "流感"],
        ["viral hepatitis", "fever of unknown origin", "shingles", "influenza"],
    ),
    "psychology": (
        "心理科",
        "Clinical Psychology",
        ["心理门诊", "心理咨询", "医学心理科", "psychology", "mental health"],
        ["焦虑", "抑郁", "失眠", "心理压力"],
        ["anxiety", "depression", "insomnia", "stress"],
    ),
    "rheumatology": (
        "风湿免疫科",
        "Rheumatology",
        ["风湿科", "免疫科", "rheumatology"],
        ["类风湿关节炎", "系统性红斑狼疮", "痛风", "强直性脊柱炎"],
        ["rheumatoid arthritis", "lupus", "gout", "ankylosing spondylitis"],
    ),
    "neurosurgery": (
        "神经外科",
        "Neurosurgery",
        ["脑外科", "neurosurgery"],
        ["脑肿瘤", "脑出血", "脑动脉瘤", "三叉神经痛"],
        ["brain tumours", "cerebral hemorrhage", "brain aneurysm", "trigeminal neuralgia"],
    ),
    "cardiac-surgery": (
        "心外科",
        "Cardiac Surgery",
        ["心脏外科", "心胸外科", "cardiac surgery"],
        ["冠脉搭桥", "心脏瓣膜病", "先天性心脏病", "主动脉疾病"],
        ["coronary bypass", "valve disease", "congenital heart disease", "aortic disease"],
    ),
    "thoracic-surgery": (
        "胸外科",
        "Thoracic Surgery",
        ["胸部外科", "肺外科", "thoracic surgery"],
        ["肺癌", "肺结节", "食管癌", "纵隔肿瘤"],
        ["lung cancer", "lung nodules", "esophageal cancer", "mediastinal tumours"],
    ),
    "breast": (
        "乳腺外科",
        "Breast Surgery",
        ["乳腺科", "乳房外科", "breast"],
        ["乳腺结节", "乳腺癌", "乳腺增生", "乳腺炎"],
        ["breast nodules", "breast cancer", "breast hyperplasia", "mastitis"],
    ),
    "plastic": (
        "整复外科",
        "Plastic and Reconstructive Surgery",
        ["整形外科", "整形科", "美容外科", "plastic surgery"],
        ["瘢痕", "先天畸形", "烧伤修复", "体表肿物"],
        ["scars", "congenital deformities", "burn reconstruction", "skin lumps"],
    ),
    "burn": (
        "烧伤整形科",
        "Burns and Plastic Surgery",
        ["烧伤科", "burns"],
        ["烧烫伤", "创面修复", "瘢痕", "慢性创面"],
        ["burns and scalds", "wound repair", "scars", "chronic wounds"],
    ),
    "vascular": (
        "血管外科",
        "Vascular Surgery",
        ["周围血管科", "脉管科", "静脉曲张门诊", "vascular surgery"],
        ["下肢静脉曲张", "糖尿病足", "动脉硬化闭塞症", "深静脉血栓"],
        ["varicose veins", "diabetic foot", "peripheral arterial disease", "deep vein thrombosis"],
    ),
    "hand-surgery": (
        "手外科",
        "Hand Surgery",
        ["手足外科", "hand surgery"],
        ["断指再植", "腕管综合征", "手部外伤", "腱鞘炎"],
        ["finger replantation", "carpal tunnel syndrome", "hand injuries", "tenosynovitis"],
    ),
    "fever-clinic": (
        "发热门诊",
        "Fever Clinic",
        ["发热科", "发烧门诊", "fever clinic"],
        ["发热", "流感", "呼吸道传染病", "不明原因发热"],
        ["fever", "influenza", "respiratory infectious diseases", "unexplained fever"],
    ),
    # traditional Chinese medicine
    "tcm-internal": (
        "中医内科",
        "TCM Internal Medicine",
        ["中医科", "中医门诊", "TCM internal medicine"],
        ["慢性咳嗽", "失眠", "体质调理", "慢性疲劳"],
        ["chronic cough", "insomnia", "constitution care", "chronic fatigue"],
    ),
    "acupuncture": (
        "针灸科",
        "Acupuncture",
        ["针灸", "针刺科", "acupuncture"],
        ["颈肩腰腿痛", "面瘫", "中风后遗症", "失眠"],
        ["neck, shoulder and back pain", "facial palsy", "stroke sequelae", "insomnia"],
    ),
    "tuina": (
        "推拿科",
        "Tuina Massage",
        ["推拿", "按摩科", "推拿按摩", "tuina", "massage"],
        ["颈椎病", "腰肌劳损", "小儿推拿", "肩周炎"],
        ["cervical spondylosis", "lumbar muscle strain", "pediatric tuina", "frozen shoulder"],
    ),
    "tcm-gyn": (
        "中医妇科",
        "TCM Gynecology",
        ["妇科中医", "TCM gynecology"],
        ["月经不调", "痛经", "不孕调理", "更年期综合征"],
        ["menstrual disorders", "period pain", "fertility care", "menopausal syndrome"],
    ),
    "tcm-peds": (
        "中医儿科",
        "TCM Pediatrics",
        ["儿科中医", "小儿中医", "TCM pediatrics"],
        ["小儿咳嗽", "厌食", "反复呼吸道感染", "小儿湿疹"],
        [
            "childhood cough",
            "poor appetite",
            "recurrent respiratory infections",
            "childhood eczema",
        ],
    ),
    "spleen-stomach": (
        "脾胃病科",
        "TCM Digestive (Spleen-Stomach) Diseases",
        ["脾胃科", "中医消化科", "中医胃病", "spleen and stomach"],
        ["慢性胃炎", "功能性消化不良", "便秘", "慢性腹泻"],
        ["chronic gastritis", "functional dyspepsia", "constipation", "chronic diarrhea"],
    ),
    "tcm-ortho": (
        "骨伤科",
        "TCM Orthopedics and Traumatology",
        ["中医骨伤科", "伤科", "正骨科", "bone-setting"],
        ["骨折", "颈椎病", "腰椎间盘突出", "骨关节炎"],
        ["fractures", "cervical spondylosis", "lumbar disc herniation", "osteoarthritis"],
    ),
    "tcm-oncology": (
        "中医肿瘤科",
        "TCM Oncology",
        ["肿瘤中医科", "TCM oncology"],
        ["肺癌中医调治", "肿瘤术后调理", "放化疗副作用", "胃癌"],
        [
            "TCM care for lung cancer",
            "post-surgery recovery",
            "side effects of chemo- and radiotherapy",
            "stomach cancer",
        ],
    ),
    "liver": (
        "肝病科",
        "Hepatology",
        ["肝科", "肝病门诊", "hepatology", "liver"],
        ["慢性乙肝", "脂肪肝", "肝硬化", "自身免疫性肝病"],
        ["chronic hepatitis B", "fatty liver", "cirrhosis", "autoimmune liver disease"],
    ),
    "tcm-surgery": (
        "中医外科",
        "TCM Surgery",
        ["中医外科门诊", "疮疡科", "TCM surgery"],
        ["乳腺病", "慢性溃疡", "痔疮", "疮疡"],
        ["breast disease", "chronic ulcers", "hemorrhoids", "sores and abscesses"],
    ),
    "anorectal": (
        "肛肠科",
        "Anorectal Surgery",
        ["肛肠外科", "痔疮科", "proctology"],
        ["痔疮", "肛裂", "肛瘘", "便秘"],
        ["hemorrhoids", "anal fissure", "anal fistula", "constipation"],
    ),
    # children's hospitals
    "peds-general": (
        "儿内科",
        "General Pediatrics",
        ["小儿内科", "儿科门诊", "普儿科", "general pediatrics"],
        ["发热", "咳嗽", "腹泻", "皮疹"],
        ["fever", "cough", "diarrhea", "rashes"],
    ),
    "peds-respiratory": (
        "儿童呼吸科",
        "Pediatric Respiratory Medicine",
        ["小儿呼吸科", "儿科呼吸", "儿童哮喘门诊", "pediatric respiratory"],
        ["肺炎", "支原体感染", "儿童哮喘", "慢性咳嗽"],
        ["pneumonia", "mycoplasma infection", "childhood asthma", "chronic cough"],
    ),
    "peds-gastro": (
        "儿童消化科",
        "Pediatric Gastroenterology",
        ["小儿消化科", "儿童胃肠科", "pediatric gastroenterology"],
        ["腹泻", "腹痛", "便秘", "营养不良"],
        ["diarrhea", "abdominal pain", "constipation", "malnutrition"],
    ),
    "neonatology": (
        "新生儿科",
        "Neonatology",
        ["新生儿门诊", "新生儿病房", "neonatology", "newborn"],
        ["新生儿黄疸", "早产儿", "新生儿感染", "喂养问题"],
        ["newborn jaundice", "premature babies", "newborn infections", "feeding problems"],
    ),
    "peds-surgery": (
        "小儿外科",
        "Pediatric Surgery",
        ["儿外科", "儿童外科", "小儿普外科", "pediatric surgery"],
        ["小儿疝气", "阑尾炎", "包皮问题", "先天畸形"],
        ["childhood hernia", "appendicitis", "foreskin problems", "congenital anomalies"],
    ),
    "peds-cardiology": (
        "儿童心血管科",
        "Pediatric Cardiology",
        ["小儿心内科", "儿童心脏科", "pediatric cardiology"],
        ["先天性心脏病", "心肌炎", "川崎病", "心律失常"],
        ["congenital heart disease", "myocarditis", "Kawasaki disease", "arrhythmia"],
    ),
    "peds-neurology": (
        "儿童神经科",
        "Pediatric Neurology",
        ["小儿神经科", "儿童神经内科", "pediatric neurology"],
        ["热性惊厥", "癫痫", "抽动症", "发育迟缓"],
        ["febrile seizures", "epilepsy", "tic disorders", "developmental delay"],
    ),
    "child-health": (
        "儿童保健科",
        "Child Health Care",
        ["儿保科", "儿童保健", "儿保", "child health"],
        ["生长发育评估", "营养指导", "疫苗咨询", "视力筛查"],
        ["growth assessment", "nutrition advice", "vaccination advice", "vision screening"],
    ),
    "peds-emergency": (
        "儿童急诊",
        "Pediatric Emergency",
        ["儿科急诊", "小儿急诊", "急诊", "pediatric emergency"],
        ["高热", "惊厥", "急性腹痛", "意外伤害"],
        ["high fever", "seizures", "acute abdominal pain", "injuries"],
    ),
    "peds-hem-onc": (
        "儿童血液肿瘤科",
        "Pediatric Hematology-Oncology",
        ["小儿血液科", "儿童血液科", "pediatric hematology oncology"],
        ["儿童白血病", "贫血", "淋巴瘤", "儿童实体瘤"],
        ["childhood leukemia", "anemia", "lymphoma", "childhood solid tumours"],
    ),
    "peds-cardiac-surgery": (
        "小儿心胸外科",
        "Pediatric Cardiothoracic Surgery",
        ["儿童心外科", "小儿心外科", "pediatric cardiac surgery"],
        ["先天性心脏病手术", "室间隔缺损", "法洛四联症", "漏斗胸"],
        [
            "congenital heart surgery",
            "ventricular septal defect",
            "tetralogy of Fallot",
            "pectus excavatum",
        ],
    ),
    "peds-urology": (
        "小儿泌尿外科",
        "Pediatric Urology",
        ["儿童泌尿外科", "小儿泌尿科", "pediatric urology"],
        ["隐睾", "尿道下裂", "肾积水", "包茎"],
        ["undescended testis", "hypospadias", "hydronephrosis", "phimosis"],
    ),
    "peds-nephrology": (
        "儿童肾脏科",
        "Pediatric Nephrology",
        ["小儿肾内科", "儿童肾病科", "pediatric nephrology"],
        ["肾病综合征", "紫癜性肾炎", "血尿", "尿路感染"],
        ["nephrotic syndrome", "purpura nephritis", "hematuria", "urinary tract infection"],
    ),
    "peds-endo": (
        "儿童内分泌科",
        "Pediatric Endocrinology",
        ["小儿内分泌科", "儿童生长发育门诊", "pediatric endocrinology"],
        ["矮小症", "性早熟", "儿童糖尿病", "儿童肥胖"],
        ["short stature", "precocious puberty", "childhood diabetes", "childhood obesity"],
    ),
    "peds-infectious": (
        "儿童感染科",
        "Pediatric Infectious Diseases",
        ["小儿感染科", "儿科感染", "pediatric infectious diseases"],
        ["手足口病", "水痘", "儿童发热", "传染病咨询"],
        [
            "hand, foot and mouth disease",
            "chickenpox",
            "fever in children",
            "infectious disease advice",
        ],
    ),
    # women's hospitals
    "gynecology": (
        "妇科",
        "Gynecology",
        ["妇科门诊", "妇女病科", "gynecology"],
        ["子宫肌瘤", "卵巢囊肿", "阴道炎", "月经不调"],
        ["uterine fibroids", "ovarian cysts", "vaginitis", "menstrual disorders"],
    ),
    "obstetrics": (
        "产科",
        "Obstetrics",
        ["产科门诊", "孕检", "产检", "obstetrics", "prenatal"],
        ["孕期检查", "高危妊娠", "妊娠期糖尿病", "分娩咨询"],
        ["prenatal check-ups", "high-risk pregnancy", "gestational diabetes", "birth planning"],
    ),
    "reproductive": (
        "生殖医学科",
        "Reproductive Medicine",
        ["生殖科", "不孕不育科", "试管婴儿", "IVF", "fertility"],
        ["不孕症", "辅助生殖", "多囊卵巢综合征", "反复流产"],
        [
            "infertility",
            "assisted reproduction",
            "polycystic ovary syndrome",
            "recurrent miscarriage",
        ],
    ),
    "cervical": (
        "宫颈疾病科",
        "Cervical Disease Clinic",
        ["宫颈科", "宫颈门诊", "阴道镜", "cervical clinic"],
        ["宫颈癌筛查", "HPV感染", "宫颈病变", "阴道镜检查"],
        ["cervical screening", "HPV infection", "cervical lesions", "colposcopy"],
    ),
    "family-planning": (
        "计划生育科",
        "Family Planning",
        ["计生科", "避孕门诊", "family planning"],
        ["避孕咨询", "人工流产", "放置和取出宫内节育器", "孕前咨询"],
        [
            "contraception advice",
            "abortion care",
            "IUD insertion and removal",
            "pre-pregnancy advice",
        ],
    ),
    "gyn-oncology": (
        "妇科肿瘤科",
        "Gynecologic Oncology",
        ["妇瘤科", "gynecologic oncology"],
        ["宫颈癌", "卵巢癌", "子宫内膜癌", "妇科肿瘤随访"],
        ["cervical cancer", "ovarian cancer", "endometrial cancer", "gynecologic cancer follow-up"],
    ),
    "women-health": (
        "妇女保健科",
        "Women's Health Care",
        ["妇保科", "妇女保健", "更年期门诊", "women's health"],
        ["更年期保健", "孕前保健", "盆底康复", "产后康复"],
        [
            "menopause care",
            "pre-pregnancy care",
            "pelvic floor rehabilitation",
            "postnatal recovery",
        ],
    ),
    "fetal-medicine": (
        "胎儿医学科",
        "Fetal Medicine",
        ["胎儿医学门诊", "产前诊断", "prenatal diagnosis"],
        ["产前诊断", "胎儿畸形筛查", "双胎妊娠", "羊水穿刺"],
        ["prenatal diagnosis", "fetal anomaly screening", "twin pregnancy", "amniocentesis"],
    ),
    # eye and ENT
    "optometry": (
        "视光科",
        "Optometry",
        ["视光门诊", "配镜", "验光", "近视门诊", "optometry"],
        ["近视", "散光", "验光配镜", "角膜塑形镜"],
        ["myopia", "astigmatism", "eye tests and glasses", "orthokeratology lenses"],
    ),
    "glaucoma": (
        "青光眼科",
        "Glaucoma",
        ["青光眼门诊", "glaucoma"],
        ["青光眼", "高眼压", "视野缺损", "青光眼手术"],
        ["glaucoma", "ocular hypertension", "visual field loss", "glaucoma surgery"],
    ),
    "retina": (
        "眼底病科",
        "Retina",
        ["眼底科", "视网膜科", "retina"],
        ["糖尿病视网膜病变", "黄斑变性", "视网膜脱离", "眼底出血"],
        [
            "diabetic retinopathy",
            "macular degeneration",
            "retinal detachment",
            "retinal hemorrhage",
        ],
    ),
    "cataract": (
        "白内障科",
        "Cataract",
        ["白内障门诊", "cataract"],
        ["老年性白内障", "先天性白内障", "人工晶体", "白内障手术"],
        ["age-related cataract", "congenital cataract", "intraocular lenses", "cataract surgery"],
    ),
    "peds-ophthalmology": (
        "儿童眼科",
        "Pediatric Ophthalmology",
        ["小儿眼科", "斜弱视门诊", "pediatric ophthalmology"],
        ["斜视", "弱视", "儿童近视", "先天性眼病"],
        ["strabismus", "amblyopia", "childhood myopia", "congenital eye disease"],
    ),
    "head-neck": (
        "头颈外科",
        "Head and Neck Surgery",
        ["头颈科", "head and neck surgery"],
        ["甲状腺肿瘤", "喉癌", "颈部肿块", "腮腺肿瘤"],
        ["thyroid tumours", "laryngeal cancer", "neck lumps", "parotid tumours"],
    ),
    "audiology": (
        "听力中心",
        "Hearing Center",
        ["听力科", "耳科", "耳聋门诊", "hearing", "audiology"],
        ["耳聋", "耳鸣", "助听器验配", "人工耳蜗"],
        ["hearing loss", "tinnitus", "hearing-aid fitting", "cochlear implants"],
    ),
    "rhinology": (
        "鼻科",
        "Rhinology",
        ["鼻科门诊", "鼻炎门诊", "rhinology"],
        ["过敏性鼻炎", "慢性鼻窦炎", "鼻息肉", "鼻出血"],
        ["allergic rhinitis", "chronic sinusitis", "nasal polyps", "nosebleeds"],
    ),
    "eent-emergency": (
        "眼耳鼻喉急诊",
        "Eye and ENT Emergency",
        ["五官科急诊", "眼科急诊", "急诊", "ENT emergency"],
        ["眼外伤", "鼻出血", "异物", "突发性耳聋"],
        ["eye injuries", "nosebleeds", "foreign bodies", "sudden hearing loss"],
    ),
    # cancer
    "med-oncology": (
        "肿瘤内科",
        "Medical Oncology",
        ["化疗科", "内科肿瘤", "medical oncology"],
        ["化疗", "靶向治疗", "免疫治疗", "肿瘤随访"],
        ["chemotherapy", "targeted therapy", "immunotherapy", "cancer follow-up"],
    ),
    "radiotherapy": (
        "放射治疗科",
        "Radiation Oncology",
        ["放疗科", "放疗", "radiotherapy"],
        ["放射治疗", "鼻咽癌", "肺癌放疗", "乳腺癌放疗"],
        [
            "radiotherapy",
            "nasopharyngeal cancer",
            "lung cancer radiotherapy",
            "breast cancer radiotherapy",
        ],
    ),
    "gi-surgery": (
        "胃肠外科",
        "Gastrointestinal Surgery",
        ["胃肠科", "大肠外科", "GI surgery"],
        ["胃癌", "结直肠癌", "胃肠间质瘤", "肠息肉"],
        ["stomach cancer", "colorectal cancer", "GI stromal tumours", "bowel polyps"],
    ),
    "integrative-oncology": (
        "中西医结合科",
        "Integrative Oncology",
        ["中医科", "中西医结合", "integrative medicine"],
        ["肿瘤康复", "放化疗副作用调理", "体质调理", "癌痛"],
        [
            "cancer rehabilitation",
            "managing side effects of treatment",
            "constitution care",
            "cancer pain",
        ],
    ),
    "interventional": (
        "介入治疗科",
        "Interventional Radiology",
        ["介入科", "interventional"],
        ["肝癌介入", "血管介入", "肿瘤消融", "穿刺活检"],
        ["liver cancer intervention", "vascular intervention", "tumour ablation", "needle biopsy"],
    ),
    # chest / pulmonary / infectious
    "tuberculosis": (
        "结核科",
        "Tuberculosis",
        ["结核病科", "肺结核门诊", "结核门诊", "tuberculosis", "TB"],
        ["肺结核", "结核性胸膜炎", "耐药结核", "结核潜伏感染"],
        [
            "pulmonary tuberculosis",
            "tuberculous pleurisy",
            "drug-resistant TB",
            "latent TB infection",
        ],
    ),
    "smoking-cessation": (
        "戒烟门诊",
        "Smoking Cessation Clinic",
        ["戒烟科", "戒烟", "smoking cessation"],
        ["烟草依赖", "戒断症状", "戒烟药物咨询", "复吸预防"],
        [
            "tobacco dependence",
            "withdrawal symptoms",
            "stop-smoking medicines",
            "relapse prevention",
        ],
    ),
    "sleep-breathing": (
        "睡眠呼吸科",
        "Sleep and Breathing",
        ["睡眠呼吸门诊", "打鼾门诊", "sleep apnea"],
        ["睡眠呼吸暂停", "打鼾", "夜间低氧", "呼吸机治疗"],
        ["sleep apnea", "snoring", "night-time low oxygen", "CPAP therapy"],
    ),
    "hiv": (
        "艾滋病科",
        "HIV Clinic",
        ["艾滋病门诊", "HIV门诊", "HIV"],
        ["HIV感染", "暴露后预防", "抗病毒治疗", "机会性感染"],
        [
            "HIV infection",
            "post-exposure prophylaxis",
            "antiretroviral therapy",
            "opportunistic infections",
        ],
    ),
    # mental health
    "general-psychiatry": (
        "普通精神科",
        "General Psychiatry",
        ["精神科", "精神科门诊", "psychiatry"],
        ["精神分裂症", "双相障碍", "幻觉妄想", "药物治疗随访"],
        [
            "schizophrenia",
            "bipolar disorder",
            "hallucinations and delusions",
            "medication follow-up",
        ],
    ),
    "mood": (
        "心境障碍科",
        "Mood Disorders",
        ["抑郁症门诊", "焦虑门诊", "情绪门诊", "depression", "mood disorders"],
        ["抑郁症", "焦虑症", "双相情感障碍", "惊恐发作"],
        ["depression", "anxiety disorders", "bipolar disorder", "panic attacks"],
    ),
    "child-psych": (
        "儿童青少年精神科",
        "Child and Adolescent Psychiatry",
        ["儿童精神科", "青少年心理门诊", "儿童心理科", "child psychiatry"],
        ["多动症", "孤独症", "厌学", "青少年抑郁"],
        ["ADHD", "autism", "school refusal", "adolescent depression"],
    ),
    "geriatric-psych": (
        "老年精神科",
        "Geriatric Psychiatry",
        ["老年心理科", "记忆门诊", "old-age psychiatry", "memory clinic"],
        ["阿尔茨海默病", "记忆减退", "老年抑郁", "谵妄"],
        ["Alzheimer's disease", "memory loss", "late-life depression", "delirium"],
    ),
    "sleep": (
        "睡眠障碍科",
        "Sleep Disorders",
        ["睡眠门诊", "失眠门诊", "sleep clinic", "insomnia"],
        ["失眠", "嗜睡", "睡眠节律紊乱", "梦魇"],
        ["insomnia", "excessive sleepiness", "circadian rhythm disorders", "nightmares"],
    ),
    "addiction": (
        "成瘾医学科",
        "Addiction Medicine",
        ["戒酒门诊", "物质依赖科", "addiction"],
        ["酒精依赖", "药物依赖", "网络成瘾", "戒断反应"],
        ["alcohol dependence", "drug dependence", "internet addiction", "withdrawal"],
    ),
    "counselling": (
        "心理咨询科",
        "Psychological Counselling",
        ["心理咨询", "心理治疗", "心理门诊", "counselling", "psychotherapy"],
        ["心理压力", "人际关系", "情绪困扰", "家庭关系"],
        ["stress", "relationships", "emotional distress", "family issues"],
    ),
    # dental hospital
    "endodontics": (
        "牙体牙髓科",
        "Endodontics",
        ["牙髓科", "补牙", "根管治疗", "endodontics"],
        ["龋齿", "牙髓炎", "根管治疗", "牙齿敏感"],
        ["tooth decay", "pulpitis", "root canal treatment", "tooth sensitivity"],
    ),
    "periodontics": (
        "牙周科",
        "Periodontics",
        ["牙周病科", "洗牙", "periodontics"],
        ["牙龈出血", "牙周炎", "洁牙", "牙齿松动"],
        ["bleeding gums", "periodontitis", "scaling and cleaning", "loose teeth"],
    ),
    "prosthodontics": (
        "口腔修复科",
        "Prosthodontics",
        ["修复科", "镶牙", "假牙", "prosthodontics"],
        ["镶牙", "烤瓷牙", "全口义齿", "牙体缺损"],
        ["crowns and bridges", "porcelain crowns", "complete dentures", "damaged teeth"],
    ),
    "implant": (
        "种植科",
        "Dental Implants",
        ["种植牙", "口腔种植科", "implants"],
        ["种植牙", "骨增量", "缺牙修复", "种植体维护"],
        ["dental implants", "bone grafting", "replacing missing teeth", "implant maintenance"],
    ),
    "orthodontics": (
        "正畸科",
        "Orthodontics",
        ["牙齿矫正", "矫正科", "orthodontics", "braces"],
        ["牙列不齐", "龅牙", "地包天", "隐形矫正"],
        ["crooked teeth", "protruding teeth", "underbite", "clear aligners"],
    ),
    "peds-dentistry": (
        "儿童口腔科",
        "Pediatric Dentistry",
        ["儿牙科", "小儿牙科", "pediatric dentistry"],
        ["儿童龋齿", "窝沟封闭", "乳牙早失", "涂氟"],
        [
            "childhood tooth decay",
            "fissure sealants",
            "early loss of baby teeth",
            "fluoride varnish",
        ],
    ),
    "oral-surgery": (
        "口腔颌面外科",
        "Oral and Maxillofacial Surgery",
        ["口腔外科", "拔牙科", "颌面外科", "oral surgery"],
        ["智齿拔除", "颌面外伤", "口腔肿物", "颞下颌关节紊乱"],
        ["wisdom tooth removal", "facial injuries", "oral lumps", "jaw joint disorders"],
    ),
    # skin hospital
    "std": (
        "性病科",
        "STD Clinic",
        ["性传播疾病科", "性病门诊", "STD"],
        ["梅毒", "尖锐湿疣", "淋病", "生殖器疱疹"],
        ["syphilis", "genital warts", "gonorrhea", "genital herpes"],
    ),
    "cosmetic-derm": (
        "皮肤美容科",
        "Cosmetic Dermatology",
        ["美容皮肤科", "医学美容", "激光美容", "cosmetic dermatology"],
        ["痤疮瘢痕", "色斑", "激光治疗", "敏感肌"],
        ["acne scars", "pigmentation", "laser treatment", "sensitive skin"],
    ),
    "peds-derm": (
        "儿童皮肤科",
        "Pediatric Dermatology",
        ["小儿皮肤科", "pediatric dermatology"],
        ["特应性皮炎", "血管瘤", "儿童湿疹", "胎记"],
        ["atopic dermatitis", "hemangioma", "childhood eczema", "birthmarks"],
    ),
    "psoriasis": (
        "银屑病专科",
        "Psoriasis Clinic",
        ["银屑病门诊", "牛皮癣门诊", "psoriasis"],
        ["寻常型银屑病", "银屑病关节炎", "生物制剂治疗", "皮损护理"],
        ["plaque psoriasis", "psoriatic arthritis", "biologic therapy", "skin care for lesions"],
    ),
    "mycology": (
        "真菌科",
        "Medical Mycology",
        ["真菌门诊", "灰指甲门诊", "fungal infections"],
        ["足癣", "甲癣", "体股癣", "花斑癣"],
        ["athlete's foot", "nail fungus", "ringworm", "tinea versicolor"],
    ),
    "allergy": (
        "变态反应科",
        "Allergy",
        ["过敏科", "过敏门诊", "allergy"],
        ["荨麻疹", "药物过敏", "过敏原检测", "接触性皮炎"],
        ["urticaria", "drug allergy", "allergy testing", "contact dermatitis"],
    ),
    # proton center
    "proton-therapy": (
        "质子重离子放疗科",
        "Proton and Heavy Ion Radiotherapy",
        ["质子放疗", "重离子治疗", "粒子放疗", "proton therapy"],
        ["前列腺癌", "肝癌", "头颈部肿瘤", "骨与软组织肉瘤"],
        [
            "prostate cancer",
            "liver cancer",
            "head and neck tumours",
            "bone and soft-tissue sarcoma",
        ],
    ),
    "radiology": (
        "医学影像科",
        "Medical Imaging",
        ["影像科", "放射科", "磁共振", "radiology", "imaging"],
        ["CT检查", "磁共振检查", "PET-CT", "影像评估"],
        ["CT scans", "MRI scans", "PET-CT", "imaging assessment"],
    ),
    "consultation": (
        "放疗咨询门诊",
        "Radiotherapy Consultation",
        ["首诊咨询", "质子咨询", "初诊评估", "consultation"],
        ["适应证评估", "病历评估", "治疗计划说明", "治疗费用咨询"],
        ["eligibility assessment", "records review", "treatment planning", "cost questions"],
    ),
    "follow-up": (
        "随访门诊",
        "Follow-up Clinic",
        ["复查门诊", "随访", "follow-up"],
        ["放疗后复查", "不良反应处理", "长期随访", "康复指导"],
        [
            "check-ups after radiotherapy",
            "managing side effects",
            "long-term follow-up",
            "rehabilitation advice",
        ],
    ),
}

# hospital id -> department slugs, in display order (6–12 each)
HOSPITAL_DEPARTMENTS: dict[str, list[str]] = {
    "ruijin": [
        "cardiology",
        "gastroenterology",
        "respiratory",
        "neurology",
        "endocrinology",
        "hematology",
        "orthopedics",
        "general-surgery",
        "burn",
        "dermatology",
        "obgyn",
        "emergency",
    ],
    "renji": [
        "cardiology",
        "gastroenterology",
        "rheumatology",
        "urology",
        "general-surgery",
        "reproductive",
        "nephrology",
        "respiratory",
        "endocrinology",
        "obgyn",
        "emergency",
    ],
    "xinhua": [
        "pediatrics",
        "peds-surgery",
        "neonatology",
        "cardiology",
        "gastroenterology",
        "respiratory",
        "endocrinology",
        "orthopedics",
        "obgyn",
        "ent",
        "emergency",
    ],
    "ninth": [
        "stomatology",
        "oral-surgery",
        "orthodontics",
        "plastic",
        "ophthalmology",
        "orthopedics",
        "cardiology",
        "ent",
        "dermatology",
        "emergency",
    ],
    "shfirst": [
        "ophthalmology",
        "urology",
        "general-surgery",
        "cardiology",
        "gastroenterology",
        "respiratory",
        "endocrinology",
        "neurology",
        "obgyn",
        "emergency",
    ],
    "sixth": [
        "orthopedics",
        "endocrinology",
        "ent",
        "cardiology",
        "gastroenterology",
        "neurology",
        "hand-surgery",
        "respiratory",
        "rehabilitation",
        "emergency",
    ],
    "zhongshan": [
        "cardiology",
        "cardiac-surgery",
        "general-surgery",
        "nephrology",
        "respiratory",
        "gastroenterology",
        "endocrinology",
        "thoracic-surgery",
        "urology",
        "geriatrics",
        "emergency",
    ],
    "huashan": [
        "neurology",
        "neurosurgery",
        "dermatology",
        "infectious",
        "hand-surgery",
        "endocrinology",
        "cardiology",
        "gastroenterology",
        "orthopedics",
        "rehabilitation",
        "emergency",
    ],
    "tenth": [
        "cardiology",
        "general-surgery",
        "nephrology",
        "gastroenterology",
        "respiratory",
        "endocrinology",
        "neurology",
        "orthopedics",
        "psychology",
        "emergency",
    ],
    "tongji": [
        "respiratory",
        "cardiology",
        "geriatrics",
        "rehabilitation",
        "orthopedics",
        "neurology",
        "gastroenterology",
        "obgyn",
        "emergency",
    ],
    "dongfang": [
        "cardiology",
        "cardiac-surgery",
        "respiratory",
        "gastroenterology",
        "neurology",
        "orthopedics",
        "oncology",
        "obgyn",
        "emergency",
    ],
    "shuguang": [
        "liver",
        "nephrology",
        "spleen-stomach",
        "acupuncture",
        "tuina",
        "tcm-internal",
        "cardiology",
        "tcm-gyn",
        "emergency",
    ],
    "longhua": [
        "tcm-oncology",
        "tcm-ortho",
        "tcm-surgery",
        "breast",
        "anorectal",
        "spleen-stomach",
        "tcm-internal",
        "acupuncture",
        "respiratory",
        "emergency",
    ],
    "yueyang": [
        "tuina",
        "acupuncture",
        "dermatology",
        "cardiology",
        "tcm-internal",
        "spleen-stomach",
        "rehabilitation",
        "tcm-peds",
        "emergency",
    ],
    "seventh": [
        "tcm-internal",
        "cardiology",
        "general-surgery",
        "orthopedics",
        "acupuncture",
        "gastroenterology",
        "respiratory",
        "obgyn",
        "emergency",
    ],
    "shtcm": [
        "tcm-internal",
        "tcm-gyn",
        "tcm-peds",
        "tcm-ortho",
        "acupuncture",
        "tuina",
        "spleen-stomach",
        "dermatology",
        "cardiology",
    ],
    "integrated": [
        "vascular",
        "tcm-internal",
        "cardiology",
        "general-surgery",
        "rehabilitation",
        "acupuncture",
        "spleen-stomach",
        "emergency",
    ],
    "fifth": [
        "cardiology",
        "respiratory",
        "gastroenterology",
        "neurology",
        "orthopedics",
        "general-surgery",
        "obgyn",
        "pediatrics",
        "emergency",
    ],
    "jinshan": [
        "cardiology",
        "respiratory",
        "gastroenterology",
        "neurology",
        "orthopedics",
        "general-surgery",
        "obgyn",
        "pediatrics",
        "emergency",
    ],
    "fourth": [
        "cardiology",
        "respiratory",
        "endocrinology",
        "orthopedics",
        "general-surgery",
        "gastroenterology",
        "rehabilitation",
        "emergency",
    ],
    "huadong": [
        "geriatrics",
        "cardiology",
        "endocrinology",
        "orthopedics",
        "neurology",
        "respiratory",
        "rehabilitation",
        "ophthalmology",
        "emergency",
    ],
    "cancer": [
        "med-oncology",
        "radiotherapy",
        "breast",
        "thoracic-surgery",
        "head-neck",
        "gi-surgery",
        "gyn-oncology",
        "integrative-oncology",
        "interventional",
    ],
    "obgyn": [
        "gynecology",
        "obstetrics",
        "reproductive",
        "cervical",
        "family-planning",
        "gyn-oncology",
        "women-health",
        "breast",
    ],
    "eent": [
        "ophthalmology",
        "ent",
        "optometry",
        "glaucoma",
        "retina",
        "cataract",
        "head-neck",
        "audiology",
        "rhinology",
        "eent-emergency",
    ],
    "fudan-children": [
        "peds-general",
        "neonatology",
        "peds-nephrology",
        "peds-respiratory",
        "peds-surgery",
        "peds-neurology",
        "peds-infectious",
        "child-health",
        "peds-emergency",
    ],
    "children": [
        "peds-general",
        "peds-respiratory",
        "peds-gastro",
        "peds-urology",
        "child-health",
        "neonatology",
        "peds-surgery",
        "peds-endo",
        "peds-emergency",
    ],
    "scmc": [
        "peds-cardiac-surgery",
        "peds-cardiology",
        "peds-hem-onc",
        "peds-general",
        "peds-surgery",
        "peds-respiratory",
        "child-health",
        "neonatology",
        "peds-emergency",
    ],
    "chest": [
        "thoracic-surgery",
        "cardiology",
        "cardiac-surgery",
        "respiratory",
        "med-oncology",
        "radiotherapy",
        "emergency",
    ],
    "pulmonary": [
        "respiratory",
        "tuberculosis",
        "thoracic-surgery",
        "med-oncology",
        "smoking-cessation",
        "sleep-breathing",
        "emergency",
    ],
    "mental": [
        "general-psychiatry",
        "mood",
        "child-psych",
        "geriatric-psych",
        "sleep",
        "addiction",
        "counselling",
    ],
    "public-health": ["infectious", "liver", "tuberculosis", "fever-clinic", "hiv", "tcm-internal"],
    "ipmch": [
        "obstetrics",
        "gynecology",
        "reproductive",
        "neonatology",
        "women-health",
        "breast",
        "family-planning",
    ],
    "first-maternity": [
        "obstetrics",
        "gynecology",
        "fetal-medicine",
        "neonatology",
        "reproductive",
        "breast",
        "family-planning",
    ],
    "stomatology": [
        "endodontics",
        "periodontics",
        "prosthodontics",
        "implant",
        "orthodontics",
        "peds-dentistry",
        "oral-surgery",
    ],
    "dermatology": [
        "dermatology",
        "std",
        "cosmetic-derm",
        "peds-derm",
        "psoriasis",
        "mycology",
        "allergy",
    ],
    "proton": [
        "proton-therapy",
        "med-oncology",
        "radiology",
        "consultation",
        "follow-up",
        "head-neck",
    ],
    "geriatric": [
        "geriatrics",
        "cardiology",
        "neurology",
        "endocrinology",
        "orthopedics",
        "rehabilitation",
        "respiratory",
        "emergency",
    ],
    "eye": ["ophthalmology", "optometry", "glaucoma", "retina", "cataract", "peds-ophthalmology"],
}

# spoken short names
SHORT_ZH = {
    "ruijin": "瑞金医院",
    "renji": "仁济医院",
    "xinhua": "新华医院",
    "ninth": "九院",
    "shfirst": "市一医院",
    "sixth": "六院",
    "zhongshan": "中山医院",
    "huashan": "华山医院",
    "tenth": "十院",
    "tongji": "同济医院",
    "dongfang": "东方医院",
    "shuguang": "曙光医院",
    "longhua": "龙华医院",
    "yueyang": "岳阳医院",
    "seventh": "七院",
    "shtcm": "市中医医院",
    "integrated": "市中西医结合医院",
    "fifth": "五院",
    "jinshan": "金山医院",
    "fourth": "四院",
    "huadong": "华东医院",
    "cancer": "肿瘤医院",
    "obgyn": "红房子医院",
    "eent": "五官科医院",
    "fudan-children": "儿科医院",
    "children": "市儿童医院",
    "scmc": "儿童医学中心",
    "chest": "胸科医院",
    "pulmonary": "肺科医院",
    "mental": "精神卫生中心",
    "public-health": "公卫中心",
    "ipmch": "国妇婴",
    "first-maternity": "一妇婴",
    "stomatology": "市口腔医院",
    "dermatology": "皮肤病医院",
    "proton": "质子重离子医院",
    "geriatric": "老年医学中心",
    "eye": "市眼防",
}

EMERGENCY_LIKE = {"emergency", "peds-emergency", "eent-emergency", "fever-clinic"}
NO_EXPERTS = EMERGENCY_LIKE | {"consultation", "radiology"}

BUILDINGS = [
    ("门诊楼", "Outpatient Building"),
    ("门诊综合楼", "Outpatient Complex"),
    ("1号楼", "Building 1"),
    ("门诊大楼", "Main Outpatient Building"),
]

SURNAMES = [
    ("王", "Wang"),
    ("李", "Li"),
    ("张", "Zhang"),
    ("刘", "Liu"),
    ("陈", "Chen"),
    ("杨", "Yang"),
    ("黄", "Huang"),
    ("赵", "Zhao"),
    ("吴", "Wu"),
    ("周", "Zhou"),
    ("徐", "Xu"),
    ("孙", "Sun"),
    ("马", "Ma"),
    ("朱", "Zhu"),
    ("胡", "Hu"),
    ("郭", "Guo"),
    ("何", "He"),
    ("林", "Lin"),
    ("罗", "Luo"),
    ("高", "Gao"),
    ("郑", "Zheng"),
    ("梁", "Liang"),
    ("谢", "Xie"),
    ("宋", "Song"),
    ("唐", "Tang"),
    ("韩", "Han"),
    ("冯", "Feng"),
    ("邓", "Deng"),
    ("曹", "Cao"),
    ("彭", "Peng"),
    ("曾", "Zeng"),
    ("肖", "Xiao"),
    ("田", "Tian"),
    ("董", "Dong"),
    ("潘", "Pan"),
    ("袁", "Yuan"),
    ("蒋", "Jiang"),
    ("蔡", "Cai"),
    ("余", "Yu"),
    ("杜", "Du"),
    ("叶", "Ye"),
    ("程", "Cheng"),
    ("魏", "Wei"),
    ("苏", "Su"),
    ("丁", "Ding"),
    ("沈", "Shen"),
    ("任", "Ren"),
    ("姚", "Yao"),
    ("卢", "Lu"),
    ("钟", "Zhong"),
    ("崔", "Cui"),
    ("顾", "Gu"),
    ("方", "Fang"),
    ("金", "Jin"),
    ("戴", "Dai"),
    ("范", "Fan"),
    ("严", "Yan"),
    ("倪", "Ni"),
    ("施", "Shi"),
    ("邵", "Shao"),
    ("钱", "Qian"),
    ("秦", "Qin"),
    ("陆", "Lu"),
    ("汪", "Wang"),
    ("俞", "Yu"),
    ("毛", "Mao"),
]

GIVEN = [
    ("敏", "min"),
    ("华", "hua"),
    ("伟", "wei"),
    ("芳", "fang"),
    ("静", "jing"),
    ("丽", "li"),
    ("磊", "lei"),
    ("军", "jun"),
    ("勇", "yong"),
    ("艳", "yan"),
    ("杰", "jie"),
    ("娟", "juan"),
    ("涛", "tao"),
    ("明", "ming"),
    ("秀", "xiu"),
    ("霞", "xia"),
    ("平", "ping"),
    ("刚", "gang"),
    ("文", "wen"),
    ("建", "jian"),
    ("国", "guo"),
    ("红", "hong"),
    ("玉", "yu"),
    ("兰", "lan"),
    ("志", "zhi"),
    ("宏", "hong"),
    ("晓", "xiao"),
    ("慧", "hui"),
    ("婷", "ting"),
    ("雪", "xue"),
    ("琳", "lin"),
    ("佳", "jia"),
    ("颖", "ying"),
    ("俊", "jun"),
    ("斌", "bin"),
    ("峰", "feng"),
    ("昊", "hao"),
    ("宇", "yu"),
    ("欣", "xin"),
    ("怡", "yi"),
    ("悦", "yue"),
    ("博", "bo"),
    ("凯", "kai"),
    ("晨", "chen"),
    ("倩", "qian"),
    ("蕾", "lei"),
    ("鹏", "peng"),
    ("亮", "liang"),
    ("海", "hai"),
    ("燕", "yan"),
    ("云", "yun"),
    ("立", "li"),
    ("新", "xin"),
    ("春", "chun"),
    ("秋", "qiu"),
    ("松", "song"),
    ("梅", "mei"),
    ("萍", "ping"),
    ("琴", "qin"),
    ("瑶", "yao"),
    ("嘉", "jia"),
    ("振", "zhen"),
    ("浩", "hao"),
    ("维", "wei"),
    ("健", "jian"),
    ("永", "yong"),
    ("荣", "rong"),
    ("宁", "ning"),
    ("清", "qing"),
    ("思", "si"),
    ("雨", "yu"),
    ("蓉", "rong"),
    ("菲", "fei"),
    ("航", "hang"),
    ("帆", "fan"),
    ("哲", "zhe"),
    ("睿", "rui"),
    ("翔", "xiang"),
]

# well-known real people (doctors, scientists, officials, celebrities) that the pools could produce
BLOCKED_NAMES = {
    "王振义",
    "陈竺",
    "陈赛娟",
    "宁光",
    "葛均波",
    "张文宏",
    "钟南山",
    "吴孟超",
    "汤钊猷",
    "樊嘉",
    "邵志敏",
    "陈灏珠",
    "顾玉东",
    "戴尅戎",
    "陈中伟",
    "邱蔚六",
    "张志愿",
    "黄荷凤",
    "瞿介明",
    "周良辅",
    "毛颖",
    "李兰娟",
    "王辰",
    "乔杰",
    "陈国强",
    "王卫庆",
    "贾伟平",
    "孙颖浩",
    "钱菊英",
    "王坚",
    "李强",
    "邓超",
    "赵薇",
    "刘涛",
    "姚晨",
    "王菲",
    "李娜",
    "刘翔",
    "孙俪",
    "马云",
    "王宁",
    "刘洋",
    "黄晓明",
    "王俊凯",
    "周冬雨",
    "刘德华",
    "赵丽颖",
    "杨紫",
    "韩红",
    "张杰",
    "王源",
    "孙杨",
    "郭晶晶",
    "周杰",
    "吴京",
    "陈坤",
    "李明",
    "王伟",
    "张伟",
    "李伟",
    "王芳",
    "李静",
    "张敏",
}

TITLES = [
    ("主任医师", "Chief Physician"),
    ("副主任医师", "Associate Chief Physician"),
    ("主治医师", "Attending Physician"),
]


def load_hospitals() -> list[Record]:
    """Read the hand-written hospitals.yaml next to this script."""
    with open(HERE / "hospitals.yaml", encoding="utf-8") as fh:
        hospitals: list[Record] = yaml.safe_load(fh)["hospitals"]
    return hospitals


def short_en(hospital: Record) -> str:
    """English hospital name without the university part."""
    name = str(hospital["name_en"])
    for sep in (",", " ("):
        name = name.split(sep)[0]
    return name


def join_zh(items: list[str]) -> str:
    """Join with 、 and 和."""
    return "、".join(items[:-1]) + "和" + items[-1] if len(items) > 1 else items[0]


def join_en(items: list[str]) -> str:
    """Join with commas and "and"."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def department_hours(hospital: Record, slug: str) -> tuple[str, str]:
    """Opening hours of a department, derived from its hospital's hours."""
    if slug in EMERGENCY_LIKE:
        return "24小时开放", "Open 24 hours"
    if "周一至周日" in hospital["opening_hours_zh"] or "周六、周日" in hospital["opening_hours_zh"]:
        return "周一至周日 08:00–17:00", "Daily 08:00–17:00"
    if slug == "proton-therapy" or hospital["id"] == "proton":
        return "周一至周五 08:00–16:30（预约制）", "Mon–Fri 08:00–16:30 (by appointment)"
    return "周一至周五 08:00–17:00，周六 08:00–11:30", "Mon–Fri 08:00–17:00, Sat 08:00–11:30"


def build_departments(hospitals: list[Record]) -> list[Record]:
    """Departments of every hospital, in HOSPITAL_DEPARTMENTS order."""
    out: list[Record] = []
    for h_index, hospital in enumerate(hospitals):
        hid = hospital["id"]
        b_zh, b_en = BUILDINGS[h_index % len(BUILDINGS)]
        clinic_index = 0
        for slug in HOSPITAL_DEPARTMENTS[hid]:
            name_zh, name_en, aliases, cond_zh, cond_en = CATALOG[slug]
            if slug in EMERGENCY_LIKE:
                if slug == "fever-clinic":
                    loc_zh, loc_en = "发热门诊楼1楼", "Fever Clinic Building, 1F"
                else:
                    loc_zh, loc_en = "急诊楼1楼", "Emergency Building, 1F"
            else:
                floor = 2 + clinic_index % 6
                clinic_index += 1
                loc_zh, loc_en = f"{b_zh}{floor}楼", f"{b_en}, {floor}F"
            hours_zh, hours_en = department_hours(hospital, slug)
            short = SHORT_ZH[hid]
            if slug in EMERGENCY_LIKE:
                intro_zh = (
                    f"{short}{name_zh}全天候接诊，处理{join_zh(cond_zh)}等急症。"
                    "危及生命时请直接拨打120。"
                )
                intro_en = (
                    f"The {name_en} of {short_en(hospital)} is open around the clock for "
                    f"{join_en(cond_en)}. In a life-threatening emergency call 120."
                )
            else:
                intro_zh = (
                    f"{short}{name_zh}的诊疗范围包括{join_zh(cond_zh)}等，提供门诊咨询与随访。"
                )
                intro_en = (
                    f"{name_en} at {short_en(hospital)} covers {join_en(cond_en)}, "
                    f"with outpatient consultations and follow-up."
                )
            out.append(
                {
                    "id": f"{hid}-{slug}",
                    "hospital": hid,
                    "name_zh": name_zh,
                    "name_en": name_en,
                    "aliases": list(aliases),
                    "location_zh": loc_zh,
                    "location_en": loc_en,
                    "hours_zh": hours_zh,
                    "hours_en": hours_en,
                    "intro_zh": intro_zh,
                    "intro_en": intro_en,
                }
            )
    return out


def pinyin_name(surname_py: str, given_py: list[str]) -> str:
    """Pinyin name such as "Zhang Minhua" (apostrophe before a vowel syllable)."""
    given = given_py[0]
    for syl in given_py[1:]:
        given += ("'" if syl[0] in "aoe" else "") + syl
    return f"{surname_py} {given.capitalize()}"


def build_experts(hospitals: list[Record], departments: list[Record]) -> list[Record]:
    """Fictional experts, 5–6 per hospital, with unique names."""
    rng = random.Random(SEED)
    by_hospital: dict[str, list[Record]] = {}
    for dept in departments:
        slug = dept["id"][len(dept["hospital"]) + 1 :]
        if slug not in NO_EXPERTS:
            by_hospital.setdefault(dept["hospital"], []).append(dept)
    big = {
        "ruijin",
        "renji",
        "xinhua",
        "ninth",
        "shfirst",
        "sixth",
        "zhongshan",
        "huashan",
        "tenth",
        "tongji",
        "dongfang",
        "huadong",
    }
    used_zh: set[str] = set()
    used_en: set[str] = set()
    experts: list[Record] = []
    hospital_by_id = {h["id"]: h for h in hospitals}
    for hospital in hospitals:
        hid = hospital["id"]
        depts = list(by_hospital[hid])
        rng.shuffle(depts)
        count = 6 if hid in big else 5
        for i in range(count):
            dept = depts[i % len(depts)]
            # fictional name, unique in zh and en, not a known real person
            while True:
                s_zh, s_en = rng.choice(SURNAMES)
                n_given = 1 if rng.random() < 0.15 else 2
                picks = [rng.choice(GIVEN) for _ in range(n_given)]
                if n_given == 2 and picks[0][0] == picks[1][0]:
                    continue
                name_zh = s_zh + "".join(p[0] for p in picks)
                name_en = pinyin_name(s_en, [p[1] for p in picks])
                if name_zh in BLOCKED_NAMES or name_zh in used_zh or name_en in used_en:
                    continue
                break
            used_zh.add(name_zh)
            used_en.add(name_en)
            r = rng.random()
            t_index = 0 if r < 0.4 else (1 if r < 0.8 else 2)
            title_zh, title_en = TITLES[t_index]
            years = rng.randint(*[(20, 32), (12, 19), (5, 11)][t_index])
            slug = dept["id"][len(hid) + 1 :]
            _, _, _, cond_zh, cond_en = CATALOG[slug]
            k = rng.randint(2, 3)
            idx = sorted(rng.sample(range(len(cond_zh)), k))
            spec_zh = [cond_zh[j] for j in idx]
            spec_en = [cond_en[j] for j in idx]
            max_day = 7 if "周一至周日" in dept["hours_zh"] else 6
            n_sessions = rng.randint(1, 3)
            slots: set[tuple[int, str]] = set()
            while len(slots) < n_sessions:
                slots.add((rng.randint(1, max_day), rng.choice(["am", "pm"])))
            schedule = [
                {"weekday": d, "session": s}
                for d, s in sorted(slots, key=lambda x: (x[0], x[1] == "pm"))
            ]
            short = SHORT_ZH[hid]
            experts.append(
                {
                    "id": f"exp-{len(experts) + 1:04d}",
                    "name_zh": name_zh,
                    "name_en": name_en,
                    "title_zh": title_zh,
                    "title_en": title_en,
                    "hospital": hid,
                    "department": dept["id"],
                    "specialties_zh": spec_zh,
                    "specialties_en": spec_en,
                    "schedule": schedule,
                    "intro_zh": (
                        f"{name_zh}，{short}{dept['name_zh']}{title_zh}（演示人物），"
                        f"从事临床工作{years}年，擅长{join_zh(spec_zh)}的诊治。"
                    ),
                    "intro_en": (
                        f"{name_en} (fictional demo person) is an {title_en.lower()} "
                        f"in {dept['name_en']} at {short_en(hospital_by_id[hid])}, "
                        f"with {years} years of clinical experience "
                        f"in {join_en(spec_en)}."
                    ).replace(" an chief", " a chief"),
                }
            )
    return experts


def dump(path: Path, key: str, items: list[Record]) -> None:
    """Write one YAML file with the demo header."""
    text = yaml.safe_dump(
        {key: items}, allow_unicode=True, sort_keys=False, width=1000, default_flow_style=False
    )
    path.write_text(
        HEADER + "# Generated by generate_people.py — edit the generator, not this file.\n" + text,
        encoding="utf-8",
    )


def main() -> None:
    """Regenerate departments.yaml and experts.yaml."""
    hospitals = load_hospitals()
    missing = {h["id"] for h in hospitals} ^ set(HOSPITAL_DEPARTMENTS)
    if missing:
        raise SystemExit(f"hospital ids without department lists (or unknown): {sorted(missing)}")
    departments = build_departments(hospitals)
    experts = build_experts(hospitals, departments)
    dump(HERE / "departments.yaml", "departments", departments)
    dump(HERE / "experts.yaml", "experts", experts)
    print(f"departments: {len(departments)}, experts: {len(experts)}")


if __name__ == "__main__":
    main()
