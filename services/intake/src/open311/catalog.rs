//! The services outside systems can request: one per category of the
//! taxonomy, with its group, keywords and the extra fields (attributes)
//! some of them ask for.

use whistle_domain::Category;

use super::doc::Node;

/// An attribute's kind of input, as Open311 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    String,
    Number,
    SingleValueList,
    MultiValueList,
}

impl Datatype {
    fn as_str(self) -> &'static str {
        match self {
            Datatype::String => "string",
            Datatype::Number => "number",
            Datatype::SingleValueList => "singlevaluelist",
            Datatype::MultiValueList => "multivaluelist",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attribute {
    pub code: &'static str,
    pub datatype: Datatype,
    pub required: bool,
    pub description: &'static str,
    pub datatype_description: Option<&'static str>,
    /// (key, name) of each choice of a list.
    pub values: &'static [(&'static str, &'static str)],
}

pub struct Service {
    pub category: Category,
    pub name: &'static str,
    pub description: &'static str,
    pub group: &'static str,
    pub keywords: &'static str,
    pub attributes: Vec<Attribute>,
}

const BUILDING: Attribute = Attribute {
    code: "building",
    datatype: Datatype::String,
    required: false,
    description: "楼号 Building (e.g. 3号楼 / Building 3)",
    datatype_description: None,
    values: &[],
};

const FLOOR: Attribute = Attribute {
    code: "floor",
    datatype: Datatype::Number,
    required: false,
    description: "楼层 Floor",
    datatype_description: Some("a whole number; -1 for the first basement"),
    values: &[],
};

/// Every service, in the taxonomy's order.
pub fn services() -> Vec<Service> {
    use Category as C;
    let s = |category, name, description, group, keywords, attributes: Vec<Attribute>| Service {
        category,
        name,
        description,
        group,
        keywords,
        attributes,
    };
    vec![
        s(
            C::Consultation,
            "咨询 Consultation",
            "A question about a policy, procedure or service; answered by the 12345 service center.",
            "general",
            "咨询, 请问, how to, question",
            vec![],
        ),
        s(
            C::Water,
            "供水排水 Water and drainage",
            "No water, low pressure, dirty water, leaking or burst pipes, blocked drains and sewers.",
            "utilities",
            "停水, 漏水, 下水道, no water, leak, drain",
            vec![BUILDING, FLOOR],
        ),
        s(
            C::Power,
            "供电 Electricity",
            "Power cuts, unstable voltage, fallen or sparking lines, meters and bills.",
            "utilities",
            "停电, 电线, power cut, wires",
            vec![],
        ),
        s(
            C::Gas,
            "燃气 Gas",
            "No gas, a gas smell or leak, gas meters and bills. In danger, also call 96777.",
            "utilities",
            "燃气, 煤气味, gas, gas smell",
            vec![FLOOR],
        ),
        s(
            C::Heating,
            "供暖 Heating",
            "Cold or lukewarm radiators, heating not started, leaking radiators, heating fees.",
            "utilities",
            "暖气, 供暖, heating, radiator",
            vec![
                BUILDING,
                FLOOR,
                Attribute {
                    code: "indoor_temperature",
                    datatype: Datatype::Number,
                    required: false,
                    description: "室温 Indoor temperature (°C)",
                    datatype_description: Some("degrees Celsius"),
                    values: &[],
                },
            ],
        ),
        s(
            C::Property,
            "物业 Property management",
            "Lifts, gates, cleaning and security of a residential compound, property fees.",
            "housing",
            "物业, 电梯, property, lift",
            vec![BUILDING],
        ),
        s(
            C::Housing,
            "住房 Housing",
            "Landlords and deposits, developers, certificates, demolition, public housing.",
            "housing",
            "房东, 押金, landlord, deposit",
            vec![],
        ),
        s(
            C::CityManagement,
            "市容城管 City management",
            "Garbage, illegal construction, street vendors, street lamps, manholes, public toilets.",
            "city",
            "垃圾, 违建, 路灯, garbage, street lamp",
            vec![Attribute {
                code: "kind",
                datatype: Datatype::MultiValueList,
                required: false,
                description: "问题 What is wrong",
                datatype_description: None,
                values: &[
                    ("garbage", "垃圾 Garbage"),
                    ("illegal_building", "违建 Illegal building"),
                    ("vendor", "摊贩 Street vendor"),
                    ("street_lamp", "路灯 Street lamp"),
                    ("manhole", "井盖 Manhole cover"),
                ],
            }],
        ),
        s(
            C::Environment,
            "环境污染 Pollution",
            "Factory smoke, dust, cooking fumes, smells, polluted rivers.",
            "city",
            "污染, 异味, pollution, smell",
            vec![],
        ),
        s(
            C::Noise,
            "噪声 Noise",
            "Noise from construction sites, neighbours, shops, bars, square dancing.",
            "city",
            "噪音, 扰民, noise, loud",
            vec![Attribute {
                code: "when",
                datatype: Datatype::SingleValueList,
                required: true,
                description: "什么时候 When does it happen",
                datatype_description: None,
                values: &[("day", "白天 Daytime (06:00-22:00)"), ("night", "夜间 At night (22:00-06:00)")],
            }],
        ),
        s(
            C::Transport,
            "交通 Transport",
            "Roads, potholes, traffic lights, buses, taxis, parking.",
            "city",
            "公交, 道路, 红绿灯, bus, road, parking",
            vec![],
        ),
        s(
            C::Education,
            "教育 Education",
            "Schools and kindergartens, enrolment, fees, safety.",
            "public services",
            "学校, 幼儿园, school, kindergarten",
            vec![],
        ),
        s(
            C::Health,
            "卫生健康 Health",
            "Hospitals, clinics, doctors, pharmacies, vaccination.",
            "public services",
            "医院, 医生, hospital, doctor",
            vec![],
        ),
        s(
            C::SocialSecurity,
            "社会保障 Social security",
            "Pensions, social and medical insurance, allowances.",
            "public services",
            "养老金, 社保, 医保, pension",
            vec![],
        ),
        s(
            C::Employment,
            "劳动就业 Employment",
            "Wage arrears, labour contracts, dismissal, overtime.",
            "public services",
            "欠薪, 劳动合同, wages, employer",
            vec![],
        ),
        s(
            C::Market,
            "市场消费 Consumers",
            "Refunds, faulty or fake goods, prepaid cards, food safety.",
            "economy",
            "退款, 食品安全, refund, food",
            vec![],
        ),
        s(
            C::Business,
            "企业服务 Business",
            "Business licences, permits, approvals, support for companies.",
            "economy",
            "营业执照, 审批, license, permit",
            vec![],
        ),
        s(
            C::Rural,
            "农业农村 Villages and farming",
            "Villages, land contracts, crops, livestock, farm subsidies.",
            "economy",
            "村, 土地, 农业, village, farm",
            vec![],
        ),
        s(
            C::Other,
            "其他 Other",
            "Anything else: thanks, suggestions, lost property, the hotline itself.",
            "general",
            "其他, 建议, other, suggestion",
            vec![],
        ),
    ]
}

pub fn find(code: &str) -> Option<Service> {
    services().into_iter().find(|s| s.category.as_str() == code)
}

impl Service {
    /// One `<service>` of the service list.
    pub fn node(&self) -> Node {
        Node::Object(vec![
            ("service_code", Node::text(self.category.as_str())),
            ("service_name", Node::text(self.name)),
            ("description", Node::text(self.description)),
            ("metadata", Node::Bool(!self.attributes.is_empty())),
            ("type", Node::text("realtime")),
            ("keywords", Node::text(self.keywords)),
            ("group", Node::text(self.group)),
        ])
    }

    /// The `<service_definition>`.
    pub fn definition(&self) -> Node {
        let attributes = self
            .attributes
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut fields = vec![
                    ("variable", Node::Bool(true)),
                    ("code", Node::text(a.code)),
                    ("datatype", Node::text(a.datatype.as_str())),
                    ("required", Node::Bool(a.required)),
                    ("datatype_description", Node::opt(a.datatype_description)),
                    ("order", Node::number(i + 1)),
                    ("description", Node::text(a.description)),
                ];
                if !a.values.is_empty() {
                    let values =
                        a.values.iter().map(|(k, n)| Node::Object(vec![("key", Node::text(*k)), ("name", Node::text(*n))])).collect();
                    fields.push(("values", Node::List("value", values)));
                }
                Node::Object(fields)
            })
            .collect();
        Node::Object(vec![("service_code", Node::text(self.category.as_str())), ("attributes", Node::List("attribute", attributes))])
    }

    /// Checks the attributes a client sent against the definition: required
    /// ones present, numbers numbers, choices among the values. Codes the
    /// definition does not know are kept as the client sent them.
    pub fn check(&self, given: &std::collections::BTreeMap<String, Vec<String>>) -> Result<(), BadAttribute> {
        for a in &self.attributes {
            let values = given.get(a.code).map(Vec::as_slice).unwrap_or_default();
            if a.required && values.is_empty() {
                return Err(BadAttribute(format!("attribute[{}] is required for service_code {}", a.code, self.category)));
            }
            match a.datatype {
                Datatype::Number => {
                    if let Some(v) = values.iter().find(|v| v.parse::<f64>().is_err()) {
                        return Err(BadAttribute(format!("attribute[{}]: {v:?} is not a number", a.code)));
                    }
                }
                Datatype::SingleValueList | Datatype::MultiValueList => {
                    if a.datatype == Datatype::SingleValueList && values.len() > 1 {
                        return Err(BadAttribute(format!("attribute[{}] takes one value", a.code)));
                    }
                    if let Some(v) = values.iter().find(|v| !a.values.iter().any(|(k, _)| k == v)) {
                        let keys: Vec<&str> = a.values.iter().map(|(k, _)| *k).collect();
                        return Err(BadAttribute(format!("attribute[{}]: {v:?} is not one of {}", a.code, keys.join(", "))));
                    }
                }
                Datatype::String => {}
            }
        }
        Ok(())
    }
}

/// An attribute a client sent that its service's definition refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadAttribute(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_service_per_category_and_their_fields_are_checked() {
        assert_eq!(services().len(), Category::ALL.len());
        let noise = find("noise").unwrap();
        let mut given = std::collections::BTreeMap::new();
        assert!(noise.check(&given).unwrap_err().0.contains("attribute[when] is required"));
        given.insert("when".to_owned(), vec!["midnight".to_owned()]);
        assert!(noise.check(&given).unwrap_err().0.contains("is not one of day, night"));
        given.insert("when".to_owned(), vec!["night".to_owned()]);
        noise.check(&given).unwrap();
        let water = find("water").unwrap();
        given.insert("floor".to_owned(), vec!["三楼".to_owned()]);
        assert!(water.check(&given).unwrap_err().0.contains("is not a number"));
    }
}
