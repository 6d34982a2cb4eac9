#!/usr/bin/env python3
"""Writes deploy/config/demo-city.toml: a demo city of 12 districts, 72 streets
with their communities, and the city's, districts' and streets' responsible
units; the gazetteer (every name a citizen may use for a place, in the five
languages: demo-city.places.json) and approximate outlines of every district,
street and community; the classification rules (demo-city.classification.toml)
with their words in each language (words/<language>.toml); the routing table
and leaders kept in demo-city.rules.toml. A real city's file replaces the
output without code changes. Run it again after editing any of these."""
import json
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent

# code, Chinese name, English name, and six streets (code suffix, Chinese, English).
DISTRICTS = [
    ("dongcheng", "东城区", "Dongcheng", [("jingshan", "景山", "Jingshan"), ("andingmen", "安定门", "Andingmen"), ("donghuamen", "东华门", "Donghuamen"), ("jianguomen", "建国门", "Jianguomen"), ("chaoyangmen", "朝阳门", "Chaoyangmen"), ("dongzhimen", "东直门", "Dongzhimen")]),
    ("xicheng", "西城区", "Xicheng", [("xinjiekou", "新街口", "Xinjiekou"), ("jinrongjie", "金融街", "Financial Street"), ("shichahai", "什刹海", "Shichahai"), ("deshengmen", "德胜门", "Deshengmen"), ("yuetan", "月坛", "Yuetan"), ("guanganmen", "广安门", "Guanganmen")]),
    ("haidian", "海淀区", "Haidian", [("zhongguancun", "中关村", "Zhongguancun"), ("xueyuanlu", "学院路", "Xueyuan Road"), ("wanshoulu", "万寿路", "Wanshou Road"), ("qinghe", "清河", "Qinghe"), ("haidianjie", "海淀街", "Haidian Street"), ("shangdi", "上地", "Shangdi")]),
    ("chaoyang", "朝阳区", "Chaoyang", [("jianwai", "建外", "Jianwai"), ("hujialou", "呼家楼", "Hujialou"), ("sanlitun", "三里屯", "Sanlitun"), ("wangjing", "望京", "Wangjing"), ("aoyuncun", "奥运村", "Olympic Village"), ("panjiayuan", "潘家园", "Panjiayuan")]),
    ("fengtai", "丰台区", "Fengtai", [("fengtaijie", "丰台街", "Fengtai Street"), ("lugouqiao", "卢沟桥", "Lugouqiao"), ("xiluoyuan", "西罗园", "Xiluoyuan"), ("majiapu", "马家堡", "Majiapu"), ("youanmen", "右安门", "Youanmen"), ("taipingqiao", "太平桥", "Taipingqiao")]),
    ("shijingshan", "石景山区", "Shijingshan", [("bajiao", "八角", "Bajiao"), ("gucheng", "古城", "Gucheng"), ("pingguoyuan", "苹果园", "Pingguoyuan"), ("lugu", "鲁谷", "Lugu"), ("laoshan", "老山", "Laoshan"), ("babaoshan", "八宝山", "Babaoshan")]),
    ("mentougou", "门头沟区", "Mentougou", [("dayu", "大峪", "Dayu"), ("chengzi", "城子", "Chengzi"), ("dongxinfang", "东辛房", "Dongxinfang"), ("datai", "大台", "Datai"), ("longquan", "龙泉", "Longquan"), ("yongding", "永定", "Yongding")]),
    ("fangshan", "房山区", "Fangshan", [("chengguan", "城关", "Chengguan"), ("liangxiang", "良乡", "Liangxiang"), ("yancun", "阎村", "Yancun"), ("doudian", "窦店", "Doudian"), ("changyang", "长阳", "Changyang"), ("xiangyang", "向阳", "Xiangyang")]),
    ("tongzhou", "通州区", "Tongzhou", [("zhongcang", "中仓", "Zhongcang"), ("xinhua", "新华", "Xinhua"), ("beiyuan", "北苑", "Beiyuan"), ("yuqiao", "玉桥", "Yuqiao"), ("liyuan", "梨园", "Liyuan"), ("songzhuang", "宋庄", "Songzhuang")]),
    ("shunyi", "顺义区", "Shunyi", [("shengli", "胜利", "Shengli"), ("guangming", "光明", "Guangming"), ("shiyuan", "石园", "Shiyuan"), ("wangquan", "旺泉", "Wangquan"), ("konggang", "空港", "Konggang"), ("houshayu", "后沙峪", "Houshayu")]),
    ("changping", "昌平区", "Changping", [("chengbei", "城北", "Chengbei"), ("chengnan", "城南", "Chengnan"), ("huilongguan", "回龙观", "Huilongguan"), ("tiantongyuan", "天通苑", "Tiantongyuan"), ("shahe", "沙河", "Shahe"), ("nankou", "南口", "Nankou")]),
    ("daxing", "大兴区", "Daxing", [("xingfeng", "兴丰", "Xingfeng"), ("linxiao", "林校路", "Linxiao Road"), ("qingyuan", "清源", "Qingyuan"), ("guanyinsi", "观音寺", "Guanyinsi"), ("tiangongyuan", "天宫院", "Tiangongyuan"), ("yizhuang", "亦庄", "Yizhuang")]),
]
PREFIX = {"dongcheng": "dc", "xicheng": "xc", "haidian": "hd", "chaoyang": "cy", "fengtai": "ft", "shijingshan": "sjs",
          "mentougou": "mtg", "fangshan": "fs", "tongzhou": "tz", "shunyi": "sy", "changping": "cp", "daxing": "dx"}

CITY_UNITS = [
    ("city-service-center", "12345 Service Center"), ("city-water", "City Water Group"), ("city-power", "State Grid City Power"),
    ("city-gas", "City Gas Group"), ("city-heating", "City Heating Group"),
    ("city-housing", "Housing and Urban-Rural Development Commission"), ("city-management", "City Management Committee"),
    ("city-ecology", "Ecology and Environment Bureau"), ("city-transport", "Transport Commission"),
    ("city-education", "Education Commission"), ("city-health", "Health Commission"),
    ("city-hrss", "Human Resources and Social Security Bureau"), ("city-market", "Market Regulation Administration"),
    ("city-commerce", "Commerce and Business Environment Bureau"), ("city-agriculture", "Agriculture and Rural Affairs Bureau"),
]
BUREAUS = [("environment", "Environment Bureau"), ("housing", "Housing Bureau"), ("city-management", "City Management Bureau"),
           ("market", "Market Regulation Bureau"), ("education", "Education Commission"), ("health", "Health Commission"),
           ("transport", "Transport Bureau"), ("water-affairs", "Water Affairs Bureau")]


# Approximate outlines: each district a box (west, south, east, north), its six
# streets a 3 x 2 grid of it, each street's two communities its halves.
BOXES = {
    "dongcheng": (116.39, 39.87, 116.45, 39.97), "xicheng": (116.33, 39.87, 116.39, 39.97),
    "haidian": (116.20, 39.93, 116.33, 40.10), "chaoyang": (116.45, 39.85, 116.62, 40.05),
    "fengtai": (116.20, 39.78, 116.39, 39.87), "shijingshan": (116.10, 39.88, 116.20, 39.98),
    "mentougou": (115.70, 39.85, 116.10, 40.10), "fangshan": (115.80, 39.55, 116.20, 39.78),
    "tongzhou": (116.62, 39.75, 116.85, 39.98), "shunyi": (116.55, 40.05, 116.90, 40.25),
    "changping": (116.10, 40.10, 116.55, 40.30), "daxing": (116.30, 39.55, 116.55, 39.78),
}
LANGUAGES = ["zh", "en", "ja", "ko", "ru"]


def q(s):
    return json.dumps(s, ensure_ascii=False)


def ring(w, s, e, n):
    return "[" + ", ".join(f"[{x:.4f}, {y:.4f}]" for x, y in [(w, s), (e, s), (e, n), (w, n)]) + "]"


def street_box(code, i):
    w, s, e, n = BOXES[code]
    col, row = i % 3, i // 3
    dx, dy = (e - w) / 3, (n - s) / 2
    return (w + col * dx, s + row * dy, w + (col + 1) * dx, s + (row + 1) * dy)


def words_list(ws):
    return "[" + ", ".join(q(w) for w in ws) + "]"


def classification():
    """The [classification] section: the rules with every language's words."""
    meta = tomllib.loads((HERE / "demo-city.classification.toml").read_text())
    words = {lang: tomllib.loads((HERE / "words" / f"{lang}.toml").read_text()) for lang in LANGUAGES}
    known = {s["name"]: s for s in meta["signals"]}
    for lang, w in words.items():
        for name in [*w.get("signals", {}), *w.get("unless", {})]:
            if name not in known:
                raise SystemExit(f"words/{lang}.toml: unknown signal {name!r}")
    categories = []
    for w in words.values():
        for c in w.get("categories", {}):
            if c not in categories:
                categories.append(c)
    out = ["[classification]", "# Generated from demo-city.classification.toml and words/*.toml.", ""]
    for c in categories:
        ws = [x for lang in LANGUAGES for x in words[lang].get("categories", {}).get(c, [])]
        out += ["[[classification.categories]]", f"category = {q(c)}", f"keywords = {words_list(ws)}", ""]
    for name, season in meta.get("seasons", {}).items():
        ws = [x for lang in LANGUAGES for x in words[lang].get("seasons", {}).get(name, [])]
        out += [f"[classification.seasons.{name}]", f"from = {q(season['from'])}", f"until = {q(season['until'])}", f"words = {words_list(ws)}", ""]
    for s in meta["signals"]:
        out += ["[[classification.signals]]", f"name = {q(s['name'])}", f"effect = {q(s['effect'])}"]
        if "season" in s:
            out.append(f"season = {q(s['season'])}")
        if "groups" in s:
            groups = [[x for lang in LANGUAGES for x in (words[lang].get("signals", {}).get(s["name"]) or [[]] * len(s["groups"]))[g]]
                      for g in range(len(s["groups"]))]
            out.append("all = [" + ", ".join(words_list(g) for g in groups) + "]")
        else:
            out.append(f"any = {words_list([x for lang in LANGUAGES for x in words[lang].get('signals', {}).get(s['name'], [])])}")
        unless = [x for lang in LANGUAGES for x in words[lang].get("unless", {}).get(s["name"], [])]
        if unless:
            out.append(f"unless = {words_list(unless)}")
        out.append("")
    r = meta["repeat"]
    out += ["[classification.repeat]"] + [f"{k} = {v}" for k, v in r.items()] + [""]
    return out


def head(n, email=None):
    """The unit head (monthly summary by SMS): a made-up number per unit."""
    mail = f", email = {q(email)}" if email else ""
    return f'head = {{ name = "Head {n:03d}", phone = "1390000{n:04d}"{mail} }}'


def main():
    n = 0
    out = ["# Generated by gen-demo-city.py; edit that script or demo-city.rules.toml, not this file.",
           "# A demo city: 12 districts, 72 streets and their communities, and 300+ responsible units.",
           'name = "Demo City"', ""]
    places_file = HERE / "demo-city.places.json"
    places = json.loads(places_file.read_text()) if places_file.exists() else {"counties": {}, "streets": {}}
    communities = []
    for code, cn, en, _ in DISTRICTS:
        aliases = places["counties"].get(code, {}).get("aliases") or [cn, cn[:-1], en]
        out += ["[[counties]]", f"code = {q(code)}", f"name = {q(en + ' District')}", f"aliases = {words_list(aliases)}",
                f"outline = {ring(*BOXES[code])}", ""]
    for code, cn, en, streets in DISTRICTS:
        for i, (s_code, s_cn, s_en) in enumerate(streets):
            street = PREFIX[code] + "-" + s_code
            p = places["streets"].get(street, {})
            west, south, east, north = street_box(code, i)
            out += ["[[streets]]", f"code = {q(street)}", f"county = {q(code)}", f"name = {q(s_en + ' Street')}",
                    f"aliases = {words_list(p.get('aliases') or [s_cn, s_en])}", f"outline = {ring(west, south, east, north)}", ""]
            middle = (west + east) / 2
            for c, half in enumerate([(west, south, middle, north), (middle, south, east, north)], start=1):
                given = (p.get("communities") or [{}, {}])[c - 1]
                name = given.get("name") or f"{s_cn}{'东' if c == 1 else '西'}社区"
                communities += ["[[communities]]", f"code = {q(street + '-community-' + str(c))}", f"street = {q(street)}",
                                f"name = {q(name)}", f"aliases = {words_list(given.get('aliases', []))}", f"outline = {ring(*half)}", ""]
    out += communities
    for code, name in CITY_UNITS:
        n += 1
        out += ["[[units]]", f"code = {q(code)}", f"name = {q(name)}", 'platform = "city"', f"email = {q(code + '@units.demo-city.example')}",
                head(n, f"head.{code}@units.demo-city.example"), ""]
    for code, cn, en, streets in DISTRICTS:
        for b_code, b_name in BUREAUS:
            n += 1
            out += ["[[units]]", f"code = {q(code + '-' + b_code)}", f"name = {q(en + ' ' + b_name)}", f"platform = {q('county:' + code)}",
                    head(n), ""]
        for s_code, s_cn, s_en in streets:
            street = PREFIX[code] + "-" + s_code
            n += 1
            out += ["[[units]]", f"code = {q(street + '-office')}", f"name = {q(s_en + ' Street Office')}", f"platform = {q('street:' + street)}",
                    head(n), ""]
            for c in (1, 2):
                out += ["[[units]]", f"code = {q(street + '-community-' + str(c))}", f"name = {q(f'{s_en} Community {c}')}",
                        f"platform = {q('street:' + street)}", ""]
    out += classification()
    out.append((HERE / "demo-city.rules.toml").read_text())
    (HERE / "demo-city.toml").write_text("\n".join(out))


if __name__ == "__main__":
    main()
