"""Pages and feeds for the tests that read them: an article page among site furniture,
the hostile pages extraction must refuse, and RSS built from items."""

from __future__ import annotations

# ---------------------------------------------------------------------- article pages

PARAGRAPHS = [
    "أعلنت وزارة الصحة اليوم عن افتتاح مستشفى جديد في مدينة جدة بسعة خمسمائة سرير، في إطار "
    "خطة لتوسيع الخدمات الصحية في المنطقة الغربية.",
    "وقال وزير الصحة في مؤتمر صحفي إن المستشفى سيضم أقساما متخصصة في أمراض القلب والأورام "
    "وجراحة الأطفال، وسيعمل فيه أكثر من ألفي موظف.",
    "وأضاف أن المشروع استغرق ثلاث سنوات من العمل المتواصل، وبلغت تكلفته الإجمالية نحو مليار "
    "ريال، بتمويل كامل من الميزانية العامة للدولة.",
    "ومن المتوقع أن يستقبل المستشفى أول مرضاه مطلع الشهر المقبل، على أن يبلغ طاقته التشغيلية "
    "الكاملة قبل نهاية العام الجاري.",
]
FURNITURE = ["اشترك الآن", "الأكثر قراءة", "خبر آخر", "جميع الحقوق محفوظة", "سياسة الخصوصية"]
ARTICLE_PAGE = f"""<!DOCTYPE html>
<html lang="ar" dir="rtl"><head><meta charset="utf-8">
<title>افتتاح مستشفى جديد في جدة | صحيفة المثال</title>
<meta property="og:title" content="افتتاح مستشفى جديد في جدة">
<meta name="author" content="سارة العتيبي">
<meta property="article:published_time" content="2024-03-05T09:30:00+03:00">
<link rel="canonical" href="https://news.example.com/health/2024/03/05/new-hospital">
<script>window.dataLayer = [];</script>
</head><body>
<header><div class="logo">صحيفة المثال</div>
<nav><ul><li><a href="/">الرئيسية</a></li><li><a href="/local">محليات</a></li>
<li><a href="/sport">رياضة</a></li><li><a href="/subscribe">اشترك الآن</a></li></ul></nav>
</header>
<main><article>
<h1>افتتاح مستشفى جديد في جدة</h1>
{"".join(f"<p>{p}</p>" for p in PARAGRAPHS)}
</article></main>
<aside><h3>الأكثر قراءة</h3>
<ul><li><a href="/a">خبر آخر</a></li><li><a href="/b">خبر ثالث</a></li></ul></aside>
<footer><p>جميع الحقوق محفوظة لصحيفة المثال 2024</p>
<ul><li><a href="/privacy">سياسة الخصوصية</a></li><li><a href="/terms">الشروط</a></li></ul>
</footer></body></html>"""


ARTICLE_PARAGRAPHS = [
    "أعلنت وزارة الصحة اليوم عن افتتاح مستشفى جديد في مدينة الرياض بسعة خمسمئة سرير، "
    "وذلك ضمن خطة لتوسيع الخدمات الطبية في المنطقة الوسطى خلال العامين المقبلين.",
    "وقال المتحدث الرسمي باسم الوزارة إن المستشفى سيضم أقساما متخصصة في أمراض القلب "
    "والأورام وطب الأطفال، إضافة إلى مركز للطوارئ يعمل على مدار الساعة.",
    "وأضاف أن المشروع كلف نحو ملياري ريال، وأن تشغيله سيوفر أكثر من ثلاثة آلاف وظيفة "
    "للكوادر الوطنية في التخصصات الطبية والفنية والإدارية.",
    "ومن المتوقع أن يستقبل المستشفى أول مرضاه مطلع العام المقبل بعد استكمال تجهيزاته "
    "واختبار أنظمته الإلكترونية وربطها بالمنصة الصحية الموحدة.",
]


def article_page(paragraphs: list[str], title: str = "افتتاح مستشفى جديد في الرياض") -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    html = f"""<!doctype html><html lang="ar"><head><meta charset="utf-8"><title>{title}</title>
<meta property="og:title" content="{title}"></head><body>
<header><nav><a href="/">الرئيسية</a> | <a href="/world">العالم</a>
 | <a href="/sport">رياضة</a></nav></header>
<main><article><h1>{title}</h1>{body}</article></main>
<footer><p>جميع الحقوق محفوظة © 2026</p><a href="/privacy">سياسة الخصوصية</a></footer>
</body></html>"""
    return html.encode("utf-8")


def element(name: str, value: str) -> str:
    if name == "content":
        return f"<content:encoded><![CDATA[{value}]]></content:encoded>"
    if name == "guid":  # an opaque id, as most feeds mean it
        return f'<guid isPermaLink="false">{value}</guid>'
    return f"<{name}>{value}</{name}>"


def rss(items: list[dict[str, str]], title: str = "Test feed") -> bytes:
    parts = []
    for item in items:
        fields = "".join(element(k, v) for k, v in item.items())
        parts.append(f"<item>{fields}</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel><title>{title}</title><link>http://example.org/</link>"
        f"<description>d</description>{''.join(parts)}</channel></rss>"
    ).encode()


# ---------------------------------------------------------------------- hostile pages

# A million sibling paragraphs, and one element with 40,000 attributes: both hold
# trafilatura in C code for minutes (see workers/ingest/extraction.py).
SIBLINGS = "<html><body>" + "<p>x</p>" * 1_000_000 + "</body></html>"
ATTRIBUTES = (
    "<html><body><p "
    + " ".join(f"a{i}='v'" for i in range(40_000))
    + ">"
    + "A paragraph of text that is long enough to count as the main text. " * 10
    + "</p></body></html>"
)
