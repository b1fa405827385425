"""The candidate-scoring reader: product facts from the visible HTML of one page.

Used for pages with no or incomplete structured data. Instead of taking the
first price-like element, it

1. walks the parsed page once (bounded: ``MAX_ELEMENTS`` elements, ``MAX_DEPTH``
   levels), marking what is not the product: navigation, header, footer, aside,
   breadcrumbs, recommendations ("customers also bought"), cart widgets, cookie and
   consent banners; on a page with more than ``MAX_TEXTS`` texts only that many,
   around the buy box (or heading), are scored, so a huge page costs bounded time;
2. finds the product's **main region** from its anchors: the main heading (the
   ``<h1>`` closest to the page title) and the buy box (the add-to-cart button or
   form); the region is their closest common ancestor, or the heading's ancestor that
   holds a price;
3. scores every candidate for price, availability, SKU and image by where it sits
   relative to that region (tree distance) and by markup cues: ``itemprop``, class and
   id words in many languages, ``data-*`` attributes, text cues (was/now, "from",
   unit prices, instalments, shipping, savings), ``alt`` text, image sizes;
4. reads embedded JavaScript state (``__NEXT_DATA__``, ``window.__INITIAL_STATE__``
   and similar assignments, ``application/json`` scripts such as Shopify's product
   JSON) for a product whose name is the page's heading.

Every field comes with a confidence (0..1) and, for the DOM fields, a CSS selector
that reads the chosen element: the hint a user can put under the channel's
``selectors`` to make the read certain. ``region_values`` lists the distinct
prices inside the main region, which lets a linked master choose between them
(never outside it).
"""

from __future__ import annotations

import bisect
import html as html_lib
import itertools
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable
from urllib.parse import urljoin, urlsplit

from auditor.model import Availability


def text_content(el) -> str:
    """All text inside an element (the tree is plain lxml.etree)."""
    return "".join(el.itertext())

MAX_ELEMENTS = 60_000     # elements looked at per page
MAX_TEXTS = 8_000         # texts scored per page: those around the buy box or heading
ANCESTORS = 80            # ancestors looked at for tree distances (a DOM nested thousands deep)
MAX_CANDIDATES = 400      # price candidates scored per page
MAX_SCRIPT = 3_000_000    # characters of one embedded JSON state parsed
MAX_JSON_NODES = 50_000   # JSON nodes walked per page
LOW_CONFIDENCE = 0.6      # below this a field never raises a failed finding

# ---------------------------------------------------------------------------- vocabulary

_WORD_SPLIT = re.compile(r"[^a-z0-9]+")

# class/id/role words of parts of a page that are not the product
_EXCLUDE_WORDS = {   # left out whole
    "nav", "navbar", "navigation", "menu", "megamenu", "submenu", "menubar", "footer",
    "breadcrumb", "breadcrumbs", "recommendations", "recommendation", "recommended",
    "related", "similar", "crosssell", "crossselling", "upsell", "upselling",
    "cookie", "cookies", "consent", "gdpr", "newsletter", "minicart",
    "recentlyviewed", "alsobought", "sponsored", "reviews", "review", "comments", "faq",
    "social", "share", "sharing", "crumbs",
}
# words that often name a page's layout wrapper too ("cms-page sidebar-right",
# "wrap_sidebar_inactive"): what sits inside only weighs less
_SOFT_WORDS = {
    "sidebar", "accessories", "flyout", "offcanvas", "recently", "viewed", "bought", "ad",
    "ads", "advert", "advertisement", "banner", "topbar", "usp", "usps", "sitemap", "header",
    "masthead",
    "toolbar", "drawer", "modal", "popup", "overlay", "tooltip", "compare", "wishlist",
    "search", "searchbar", "alternative", "alternatives",
}
# multi-word markers matched against the joined class/id string
_EXCLUDE_JOINED = re.compile(
    r"mini-?cart|cart-?(drawer|flyout|popup|preview|widget|summary)|site-?header|page-?header|"
    r"site-?footer|also-?(bought|viewed|like)|customers?-?also|you-?may-?also|"
    r"frequently-?bought|recently-?viewed|product-?(recommendations|slider|carousel|tiles|grid|"
    r"list)|similar-?products|related-?products|cookie|consent|onetrust|didomi|usercentrics|"
    r"cmp-|-cmp\b|privacy-?banner|shopping-?cart(?!-?add)|header-?(nav|menu|top|bar)|"
    r"buy-?together|bought-?together")
_EXCLUDE_TAGS = {"nav", "footer", "aside", "header", "dialog"}
_EXCLUDE_ROLES = {"navigation", "banner", "contentinfo", "complementary", "dialog", "search",
                  "menu", "menubar", "alertdialog"}
_HIDDEN = re.compile(r"(?:^|\s)(?:hidden|d-none|hide|is-hidden|a-hidden|aok-hidden|u-hidden|"
                     r"js-hidden|display-none|invisible)(?:\s|$)", re.I)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head", "select", "option",
              "textarea", "iframe"}

# add to cart, buy now: in many languages
_ATC_TEXT = re.compile(
    r"add\s+to\s+(my\s+|shopping\s+)?(cart|bag|basket|trolley)|buy\s+(it\s+)?now|in\s+den\s+(warenkorb|einkaufswagen)|"
    r"warenkorb\b|jetzt\s+kaufen|ajouter\s+au\s+panier|ajouter\s+au\s+sac|acheter|"
    r"a[ñn]adir\s+(al\s+)?(carrito|cesta|la\s+cesta)|comprar|aggiungi\s+al\s+carrello|"
    r"acquista|in\s+winkelwagen|in\s+de\s+winkelwagen|toevoegen\s+aan|bestellen|"
    r"l[äa]gg\s+i\s+(varukorgen|kundvagnen)|k[öo]p\s+nu|l[æa]g\s+i\s+kurv|legg\s+i\s+handlekurv|"
    r"dodaj\s+do\s+koszyka|kup\s+teraz|adicionar\s+ao\s+carrinho|do\s+ko[šs]íku|"
    r"kos[áa]rba|lis[äa][äa]\s+ostoskoriin|sepete\s+ekle|在庫|カートに入れる|加入购物车|"
    r"pre-?order|vorbestellen|précommander|reservar|"
    r"(добавить\s+(товар\s+)?)?в\s+корзину|купить|в\s+кошик|купити|do\s+koszyka|"
    r"do\s+ko[šs][íi]ka|k[úu]pi[ťt]|koupit|kosárba\s+tesz|v[áa]s[áa]rl[áa]s", re.I)
_ATC_MARK = re.compile(r"add-?to-?(cart|bag|basket)|addtocart|add_to_cart|buy-?(button|now|box)|"
                       r"buybox|buy_box|product-?form|cart-?add|btn-?cart|warenkorb|"
                       r"purchase|checkout-?button", re.I)

# price words in class, id, itemprop and data-* names
_PRICE_MARK = re.compile(r"price|preis|prix|precio|prezzo|prijs|\bpris|cena|pre[cç]o|"
                         r"amount|cost|betrag|kaina|hinta|fiyat|offer|sale", re.I)
_CURRENT_MARK = re.compile(r"(sale|current|final|now|special|actual|our|selling|offer|"
                           r"promo|deal|reduced|live|main|regular-?price-?now)", re.I)
_OLD_MARK = re.compile(r"(compare|was|old|regular|original|list|strike|crossed|before|rrp|uvp|"
                       r"msrp|former|previous|streich|statt|alt|barre|tachado|deprecated|"
                       r"barrato|doorgestreept|basis-?price)(?![a-z])|line-through|"
                       r"price-?(was|old|before|strike|regular|compare)", re.I)
# words that make a price element the current one whatever else its classes say
_NOW_MARK = re.compile(r"price-?now|now-?price|sale|special|final|current|reduced|actual|"
                       r"promo|deal|offer-?price|selling", re.I)
_OLD_TEXT = re.compile(
    r"\b(was|before|previously|regular(ly)?|reg\.?|list\s*price|rrp|msrp|compare\s+at|"
    r"uvp|statt|bisher|vorher|ursprünglich|streichpreis|unverbindliche|"
    r"avant|au\s+lieu\s+de|prix\s+barré|antes|precio\s+anterior|prima|invece\s+di|"
    r"van|voorheen|adviesprijs|tidigare|ord\.?\s*pris|ordinarie|før|tidligere|"
    r"poprzednio|cena\s+regularna|era|de)\b\s*:?\s*$", re.I)
# A reference price: the manufacturer's recommended or a list price, not the shop's own
# earlier price; shown beside the selling price it makes no sale (the selling price is the
# price). "UVP 1.499,00 €", "RRP £120", "prix conseillé", "adviesprijs".
_REF_TEXT = re.compile(
    r"(?<![a-z])(uvp|rrp|msrp|srp|unverbindliche(\s+preisempfehlung)?|preisempfehlung|empf\.?\s*vk|"
    r"listenpreis|list\s*price|suggested\s+retail(\s+price)?|prix\s+conseillé|pvpr?|"
    r"pvp\s+recomendado|precio\s+recomendado|prezzo\s+consigliato|adviesprijs|"
    r"rek\.?\s*pris|cena\s+katalogowa)\b\.?\s*:?\s*"
    r"[" + "€$£¥₹₽₺₩₪₫₴₦₱฿" + r"]?\s*$", re.I)
_REF_MARK = re.compile(r"(rrp|uvp|msrp|srp|list-?price|recommended)(?![a-z])", re.I)
_UNIT_TEXT = re.compile(
    r"(/|per|pro|je|par|por|al|a|à|i|za)\s*(\d+\s*)?(kg|g|gr|l|ltr|liter|litre|litro|ml|cl|"
    r"m|m²|m2|qm|cm|stk|stück|st\.|piece|pc|pcs|unit|unité|unidad|each|100\s*(g|ml))\b|"
    r"grundpreis|unit\s*price|prix\s+(au|unitaire)|precio\s+(por|unitario)|prezzo\s+al|"
    r"jednostkowa|jämförpris|literpreis|kilopreis|base\s*price", re.I)
_INSTALMENT_TEXT = re.compile(
    r"/\s*(mo|mon|month|mtl|monat|mois|mes|mese|maand|mån)\b|per\s+month|a\s+month|"
    r"monthly|monatlich|mtl\.|monatsrate|\braten?\b|finanzier|par\s+mois|mensualit|"
    r"al\s+mes|cuotas|al\s+mese|rate\s+da|per\s+maand|i\s+månaden|/\s*mies|rat[ay]\b|"
    r"\d+\s*x\s*\d|\b\d+\s+(interest-free\s+)?payments|klarna|afterpay|paypal|affirm|"
    r"\bab\s+[\d,.]+\s*€?\s*(mtl|monat)|installment|instalment", re.I)
_SHIPPING_TEXT = re.compile(
    r"versand|shipping|delivery|lieferung|livraison|env[ií]o|spedizione|verzend|frakt|"
    r"porto|wysyłka|zzgl|plus\s+vat|\bsave\b|you\s+save|sie\s+sparen|ersparnis|sparen|"
    r"économisez|ahorra|risparmi|bespaar|spara|oszczędzasz|gutschein|coupon|voucher|"
    r"cashback|bonus|deposit|pfand|gift\s*card|geschenkkarte|off\b|rabatt|reward|points|"
    r"punkte|trade-?in|inzahlung", re.I)
# amounts that are not this shop's price for this product: other shops' prices, bundles,
# savings, price filters ("Less than $30") -- matched on the text just before the amount
_OTHER_TEXT = re.compile(
    r"(in\s+other\s+(shops|stores)|elsewhere|at\s+other\s+retailers|compare\s+with|"
    r"w\s+innych\s+sklepach|v\s+jiných\s+obchodech|v\s+iných\s+obchodoch|"
    r"in\s+anderen\s+(shops|geschäften)|woanders|ailleurs|dans\s+d'autres\s+magasins|"
    r"en\s+otras\s+tiendas|in\s+altri\s+negozi|más\s+tiendas|más\s+barato|"
    r"в\s+других\s+магазинах|más\s+precio|market\s+price|marktpreis|vergleichspreis|"
    r"referenzpreis|prix\s+(de\s+)?référence|"
    r"price\s+for\s+(both|all)|for\s+both|both\s+for|buy\s+(them\s+)?together|bundle(\s+price)?|"
    r"set\s+price|(preis\s+)?für\s+(beide|alle)|zusammen\s+kaufen|prix\s+(pour\s+les\s+deux|du\s+lot)|"
    r"precio\s+(por\s+)?(ambos|del\s+pack)|cena\s+(za\s+)?(oba|zestaw|komplet|set)|"
    r"your\s+savings?|you\s+save|savings?|save|sie\s+sparen|ersparnis|économisez|économie|"
    r"ahorras?|ahorro|risparmi|bespaar|oszczędzasz|oszczędność|ušetříte|ušetríte|úspora|"
    r"megtakarítás|spórol|экономия|вы\s+экономите|скидка)\s*:?\s*"
    r"[" + "€$£¥₹₽₺₩₪₫₴₦₱฿" + r"]?\s*$", re.I)
_FILTER_TEXT = re.compile(
    r"(less\s+than|under|over|below|above|up\s+to|unter|über|bis|moins\s+de|plus\s+de|"
    r"menos\s+de|más\s+de|meno\s+di|poniżej|powyżej|do|до|от|alatt|felett)\s*:?\s*"
    r"[" + "€$£¥₹₽₺₩₪₫₴₦₱฿" + r"]?\s*$", re.I)
_TRAIL = re.compile(r"(\S\s*[>»›/|]\s*){2}\S")   # "Home > Sale > Under $30": a breadcrumb trail
_FROM_TEXT = re.compile(r"\b(from|ab|à\s+partir\s+de|desde|a\s+partire\s+da|vanaf|från|fra|"
                        r"od|starting\s+at|starts?\s+at)\b\s*:?\s*$", re.I)

_CURRENCY_SYMBOLS = "€$£¥₹₽₺₩₪₫₴₦₱฿"
_CODES = ("EUR|USD|GBP|CHF|JPY|SEK|NOK|DKK|PLN|CZK|HUF|RON|BGN|HRK|CAD|AUD|NZD|MXN|BRL|"
          "INR|CNY|RUB|TRY|ZAR|SGD|HKD|ILS|AED|SAR|KRW")
_MONEY = re.compile(
    r"(?P<pre>(?:[" + _CURRENCY_SYMBOLS + r"]|\b(?:" + _CODES + r"|US\$|CA\$|A\$|C\$|R\$|"
    r"Fr\.|SFr\.?)\b)\s?)?"
    r"(?P<num>\d{1,3}(?:[ .,'\u00a0\u202f]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?)"
    r"(?:[.,]-|,–|\.–)?"
    r"(?P<post>\s?(?:[" + _CURRENCY_SYMBOLS + r"]|\b(?:" + _CODES + r"|kr\.?|zł|Kč|Ft|lei|"
    r"TL|kn|лв)\b|(?:руб(?:л[а-яё]*)?|грн|р)\.?(?![а-яё])))?", re.I)
_HAS_DIGIT = re.compile(r"\d")
_CURRENCY_HINT = re.compile(r"[" + _CURRENCY_SYMBOLS + r"]|\b(?:" + _CODES + r"|kr|zł|Kč|Ft|lei|"
                            r"TL|Fr|kn|лв)\b|\d\s?(?:руб|грн|р\.)", re.I)
# local currency signs ``normalize_currency`` does not know (lower case, no dot)
_LOCAL_SIGNS = {"руб": "RUB", "рублей": "RUB", "рубля": "RUB", "рубль": "RUB", "р": "RUB", "грн": "UAH", "₴": "UAH", "zł": "PLN", "kč": "CZK",
                "ft": "HUF", "lei": "RON", "лв": "BGN", "kn": "HRK", "tl": "TRY", "₺": "TRY",
                "fr": "CHF", "sfr": "CHF", "₽": "RUB", "€": "EUR", "£": "GBP"}

# availability phrases, most specific first; (pattern, value)
_AVAIL_PATTERNS: list[tuple[re.Pattern, Availability]] = [
    (re.compile(
        r"out\s+of\s+stock|sold\s+out|currently\s+unavailable|no\s+longer\s+available|"
        r"not\s+available|unavailable|temporarily\s+out|"
        r"ausverkauft|nicht\s+(auf\s+lager|lieferbar|verfügbar|vorrätig|mehr\s+verfügbar)|"
        r"derzeit\s+nicht|vergriffen|"
        r"épuisé|epuise|en\s+rupture|rupture\s+de\s+stock|indisponible|plus\s+disponible|"
        r"agotado|sin\s+stock|no\s+disponible|fuera\s+de\s+stock|"
        r"esaurito|non\s+disponibile|"
        r"niet\s+op\s+voorraad|uitverkocht|niet\s+leverbaar|"
        r"slut\s+i\s+lager|slutsåld|ej\s+i\s+lager|ikke\s+på\s+lager|udsolgt|utsolgt|"
        r"brak\s+w\s+magazynie|niedostępny|wyprzedany|"
        r"esgotado|indisponível|sem\s+estoque|"
        r"vyprodáno|není\s+skladem|nincs\s+raktáron|elfogyott|"
        r"loppu\s+varastosta|tükendi|stokta\s+yok|"
        r"нет\s+в\s+наличии|распродано|在庫切れ|売り切れ|缺货|품절|"
        r"(don'?t|do\s+not|doesn'?t|does\s+not)\s+(currently\s+)?have\s+(that|this|it)(\s+one)?"
        r"\s+in\s+stock|not\s+(currently\s+)?in\s+stock|no\s+stock|"
        r"nie\s+je\s+(na\s+sklade|skladom)|vypredan[éý]|nedostupn[éý]|"
        r"brak\s+(na\s+stanie|towaru|produktu)|produkt\s+niedostępny|"
        r"nincs\s+készleten|nem\s+elérhető|"
        r"отсутствует|нет\s+на\s+складе|наличи[ея][^:<]{0,20}:\s*нет\b|"
        r"немає\s+в\s+наявності|відсутній|"
        r"stock:\s*0\b|\b0\s+(in\s+stock|auf\s+lager|available)", re.I),
     Availability.OUT_OF_STOCK),
    (re.compile(r"pre-?order|vorbestell|vorbesteller|erscheint\s+am|noch\s+nicht\s+erschienen|"
                r"précommande|pré-commande|preventa|reserva\s+ya|prenota(zione)?|"
                r"voorbestellen|förhandsboka|przedsprzedaż|pré-venda|coming\s+soon|"
                r"demnächst|bald\s+verfügbar|予約", re.I), Availability.PREORDER),
    (re.compile(r"back-?order|auf\s+bestellung|wird\s+nachgeliefert|nachbestellt|"
                r"lieferbar\s+in\s+\d+\s*(-\s*\d+\s*)?(wochen|monaten)|en\s+réapprovisionnement|"
                r"bajo\s+pedido|su\s+ordinazione|in\s+nabestelling|beställningsvara|"
                r"na\s+zamówienie|под\s+заказ|na\s+objednávku|na\s+objednávku|"
                r"rendelésre", re.I), Availability.BACKORDER),
    (re.compile(
        r"in\s+stock|available\s+now|ready\s+to\s+ship|ships\s+(today|in|within)|"
        r"only\s+\d+\s+left|\d+\s+(left|available)\b|"
        r"auf\s+lager|vorrätig|sofort\s+lieferbar|lieferbar|verfügbar|sofort\s+versandfertig|"
        r"nur\s+noch\s+\d+|lagernd|"
        r"en\s+stock|disponible|expédié\s+sous|"
        r"en\s+existencia|disponibilidad\s+inmediata|"
        r"disponibile|in\s+magazzino|"
        r"op\s+voorraad|leverbaar|"
        r"i\s+lager|finns\s+i\s+lager|på\s+lager|"
        r"w\s+magazynie|dostępny|"
        r"em\s+estoque|disponível|"
        r"skladem|raktáron|varastossa|stokta|в\s+наличии|在庫あり|有货|재고\s*있음|"
        r"na\s+sklade|skladom|na\s+stanie|natychmiastowa\s+wysyłka|készleten|"
        r"наличи[ея][^:<]{0,20}:\s*(да|есть)\b|на\s+складе|в\s+наявності", re.I),
     Availability.IN_STOCK),
]

# SKU labels, by priority (the shop's own number first, then model / manufacturer numbers)
_SKU_LABELS = [
    (re.compile(r"^(sku|item\s*(no|nr|number|#)|art(icle|ikel)?\.?\s*-?\s*(no|nr|nummer|number)"
                r"|artikelnummer|artikel-?nr|art\.-?nr|bestell-?(nr|nummer)|best\.-?nr|"
                r"product\s*(code|id|no|number)|produkt-?(nr|nummer|id)|asin|"
                r"réf(érence)?|ref\.?|referencia|referência|codice(\s+(articolo|prodotto))?|"
                r"cod\.?\s*(art|articolo|prodotto)|code\s+(article|produit)|art\.?\s*nr|"
                r"artikelnr|varenummer|varenr|varunummer|artikelnummer|tuotenumero|"
                r"nr\.?\s*(katalogowy|produktu|art)|kod\s+produktu|indeks|"
                r"katalogové\s+číslo|cikkszám|ürün\s+kodu|код\s+товара|артикул|"
                r"商品番号|型番|item|style(\s*(no|#|number|code))?|web\s*id|stock\s*code|part\s*(no|#)|"
                r"product\s*(code|id|no|number|#)|item\s*(code|id|no\.?|nr|#)|"
                r"catalog(ue)?\s*(item\s*)?(#|no\.?|nr|number)?|cat\.?\s*(#|no\.?)|"
                r"k[óo]d(\s+(tovaru|produktu|zboží|zbozi|výrobku|artiklu))?|kod(\s+towaru)?|"
                r"číslo\s+(produktu|zboží|tovaru)|numer\s+(katalogowy|produktu)|symbol|"
                r"termékkód|cikkszám|cikkszam|termékszám|код(\s+(товара|продукта|модели))?|"
                r"арт\.?|артикул(\s+товара)?|номер\s+товара|vare-?nr\.?|tuotekoodi|"
                r"numéro\s+d'article|n°\s*(d'article|article|produit)|código|cod\.?|"
                r"reference|referentie|artikel-?code)$",
                re.I), 0.85),
    (re.compile(r"^((product\s*|item\s*)?id)$", re.I), 0.55),
    (re.compile(r"^(model(l)?(\s*(no|nr|number|nummer|#))?|mpn|modèle|modelo|modello|"
                r"herstellernummer|hersteller-?(nr|artikelnummer)|mfr\.?\s*(part|#|no)|"
                r"manufacturer\s*(part\s*)?(no|number|#))$", re.I), 0.5),
]
_SKU_VALUE = re.compile(r"^[#:\s]*([A-Za-z0-9][A-Za-z0-9\-_./#+]{2,40})")
_SKU_INLINE = re.compile(
    r"(?<![\w-])(SKU|Art(?:ikel|icle)?\.?[\s\-]*(?:No|Nr|Nummer)\.?|Artikelnummer|"
    r"Item\s*(?:No\.?|#|number|code)|Catalog(?:ue)?\s*(?:Item\s*)?(?:#|No\.?|number)|Style\s*#|"
    r"Bestell-?(?:Nr|nummer)\.?|Product\s+(?:code|ID|#)|ASIN|R[ée]f(?:[ée]rence)?\.?|Referencia|"
    r"Codice(?:\s+articolo)?|Varenummer|Nr\s+katalogowy|Kod\s+produktu|K[óo]d\s+(?:tovaru|produktu)|"
    r"Код(?:\s+товара)?|Артикул|Cikkszám|Model(?:\s*(?:No|#))?)"
    r"(?:\s*[:#]\s*|(?<=[#.])\s*(?=[A-Za-z\-]*\d)|\s+(?=[A-Za-z\-]*\d))"
    r"([A-Za-z0-9][A-Za-z0-9\-_./]{2,40})", re.I)
# an element whose class or id names it the article number ("sku", "item-code", "prod_id")
_SKU_MARK = re.compile(r"(?:^|[\s_-])(sku|item-?code|itemcode|product-?code|productcode|"
                       r"prod(uct)?-?id|item-?(no|number)|art(icle)?-?(no|nr|number)|"
                       r"artikelnummer|style-?(no|number|id))(?:$|[\s_-])", re.I)

_GALLERY_MARK = re.compile(r"gallery|product-?(image|img|photo|media|picture|gallery|hero|main)|"
                           r"main-?(image|img|photo|picture)|hero|zoom|pdp|primary|landing|"
                           r"slideshow|swiper|slider|thumbnail|featured|media|produktbild|"
                           r"image-?main|imgtagwrapper|img-?wrapper|enlarge|img-?detail|"
                           r"detail-?(img|image|photo)|imgdetailed|main-?foto|foto|bild", re.I)
_BAD_IMG = re.compile(r"logo|icon|sprite|pixel|spacer|blank|placeholder|loader|loading|badge|"
                      r"energy|efficiency|energie|"
                      r"flag|payment|rating|star|avatar|banner|transparent|1x1|captcha|"
                      r"trustedshops|trusted|siegel|seal|\.svg(\?|$)|\.gif(\?|$)|"
                      r"swatch|colou?r-?chip|colorchip", re.I)
_HIRES_ATTRS = ("data-old-hires", "data-zoom-image", "data-zoom", "data-large_image",
                "data-large-image", "data-large", "data-full", "data-full-image", "data-hires",
                "data-original", "data-big", "data-image-large", "data-zoom-src")
_LAZY_ATTRS = ("data-src", "data-lazy-src", "data-lazy", "data-srcset", "data-original-src",
               "data-image", "data-img", "src")

_NOT_FOUND = re.compile(
    r"\b(404|page\s+not\s+found|not\s+found|seite\s+nicht\s+gefunden|nicht\s+gefunden|"
    r"page\s+introuvable|p[áa]gina\s+no\s+encontrada|pagina\s+non\s+trovata|"
    r"pagina\s+niet\s+gevonden|sidan\s+hittades\s+inte|nie\s+znaleziono|"
    r"product\s+(is\s+)?no\s+longer\s+available|produkt\s+nicht\s+mehr|"
    r"this\s+page\s+(does\s+not|doesn't)\s+exist)\b", re.I)
_CONSENT = re.compile(
    r"before\s+you\s+continue|we\s+value\s+your\s+privacy|consent\s+to\s+(our|the)\s+use|"
    r"cookie\s+(settings|preferences|consent)|accept\s+(all\s+)?cookies|"
    r"alle\s+(cookies\s+)?akzeptieren|cookie-?einstellungen|wir\s+verwenden\s+cookies|"
    r"accepter\s+(tous\s+)?les\s+cookies|aceptar\s+(todas\s+las\s+)?cookies|"
    r"accetta\s+(tutti\s+i\s+)?cookie|cookies\s+accepteren|godkänn\s+(alla\s+)?cookies|"
    r"zaakceptuj|your\s+privacy\s+choices", re.I)
_CAPTCHA = re.compile(r"captcha|robot\s+check|are\s+you\s+a\s+(robot|human)|"
                      r"verify\s+(that\s+)?you\s+are\s+(a\s+)?human|unusual\s+traffic|"
                      r"press\s+(&|and)\s+hold|access\s+denied|just\s+a\s+moment", re.I)


# ---------------------------------------------------------------------------- results

@dataclass
class PageRead:
    """What the reader found: values with a confidence and a selector hint per field."""

    values: dict[str, Any] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # field -> "heuristic" / "js-state"
    # distinct amounts shown inside the product's main region (for master disambiguation)
    region_prices: list[Decimal] = field(default_factory=list)
    # why this is not a product page ("category listing ...", "soft 404 ...", "consent wall")
    not_product: str | None = None
    blocked: str | None = None   # captcha or consent wall: the page could not be seen
    # field -> how sure the reader is that the page shows no such value (looked, found none)
    absent: dict[str, float] = field(default_factory=dict)

    def put(self, name: str, value: Any, conf: float, hint: str | None = None,
            source: str = "heuristic") -> None:
        if value in (None, "", []):
            return
        self.values[name] = value
        self.confidence[name] = round(max(0.0, min(1.0, conf)), 2)
        self.sources[name] = source
        if hint:
            self.hints[name] = hint


@dataclass
class _Cand:
    el: Any
    amount: Decimal
    currency: str | None
    text: str
    score: float = 0.0
    old: bool = False
    old_by_class: bool = False   # "old" only for a class word ("regular-price"), no strike
    reference: bool = False      # a recommended/list price (UVP, RRP): never the regular price
    dist: int = 99
    in_region: bool = False
    order: int = 0


# ---------------------------------------------------------------------------- helpers

def _marker(el) -> str:
    """class, id, itemprop, role and data-* attribute names/values of an element, lower-case."""
    parts = [el.get("class") or "", el.get("id") or "", el.get("itemprop") or ""]
    for k, v in el.attrib.items():
        if k.startswith(("data-", "aria-label")) and len(parts) < 12:
            parts.append(k)
            if len(v) < 60:
                parts.append(v)
    return " ".join(parts).lower()


def _norm(s: str) -> str:
    return re.sub(r"\W+", " ", s or "").strip().casefold()


def _similar(a: str, b: str) -> float:
    """Token overlap of two titles (0..1)."""
    ta, tb = set(_norm(a).split()), set(_norm(b).split())
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / max(1, min(len(ta), len(tb)))


def parse_amount(num: str) -> Decimal | None:
    """'1.299,00' / '1,299.00' / '1 299,95' / "1'299.95" / '12,-' -> Decimal."""
    s = num.strip().replace("\u00a0", " ").replace("\u202f", " ")
    s = re.sub(r"[.,]-+$|[.,]–$", "", s)
    seps = [c for c in s if c in ".,' "]
    if not seps:
        digits = s
    else:
        last = max(s.rfind("."), s.rfind(","))
        tail = s[last + 1:] if last >= 0 else ""
        body = s[:last] if last >= 0 else s
        if last >= 0 and len(tail) in (1, 2) and s[last] in ".,":
            digits = re.sub(r"[.,' ]", "", body) + "." + tail
        elif last >= 0 and len(tail) == 3 and s.count(s[last]) == 1 and \
                not re.search(r"[.,' ]", body) and s[last] == "." and len(body) <= 3 and False:
            digits = body + tail
        else:
            digits = re.sub(r"[.,' ]", "", s)
    try:
        d = Decimal(digits)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _currency_of(sym: str | None, host: str = "") -> str | None:
    if not sym:
        return None
    s = sym.strip().rstrip(".")
    if s.upper() in _CODES.split("|"):
        return s.upper()
    if s in ("$", "US$"):
        for tld, cur in ((".ca", "CAD"), (".com.au", "AUD"), (".au", "AUD"), (".co.nz", "NZD"),
                         (".com.mx", "MXN"), (".sg", "SGD"), (".hk", "HKD")):
            if host.endswith(tld):
                return cur
        return "USD"
    if s.lower().rstrip(".") in _LOCAL_SIGNS:
        return _LOCAL_SIGNS[s.lower().rstrip(".")]
    if s.lower() == "kr":
        for tld, cur in ((".no", "NOK"), (".dk", "DKK"), (".se", "SEK"), (".is", "ISK")):
            if host.endswith(tld):
                return cur
        return "SEK"
    from auditor.values import normalize_currency

    try:
        return normalize_currency(s)
    except ValueError:
        return None


def _price_text(el, limit: int = 160) -> str:
    """An element's text with split prices joined: ``19<sup>99</sup>`` -> ``19.99``."""
    parts: list[str] = []
    n = 0
    for node in el.iter():
        n += 1
        if n > 40:
            break
        if not isinstance(node.tag, str) or node.tag in _SKIP_TAGS:
            continue
        if node is not el and node.tag in ("sup", "small", "span") and node.text and \
                re.fullmatch(r"\s*\d{2}\s*", node.text) and parts and \
                re.search(r"\d\s*$", parts[-1]):
            parts[-1] = parts[-1].rstrip().rstrip(".,") + "." + node.text.strip()
        elif node.text:
            parts.append(node.text)
        if node is not el and node.tail:
            parts.append(node.tail)
        if sum(map(len, parts)) > limit:
            break
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def _selector(el) -> str:
    """A short CSS selector for ``el``: tag with id, or tag.class under a marked ancestor."""
    def one(e) -> str:
        tag = e.tag if isinstance(e.tag, str) else "*"
        eid = (e.get("id") or "").strip()
        if eid and re.fullmatch(r"[A-Za-z][\w-]{0,60}", eid):
            return f"#{eid}"
        ip = e.get("itemprop")
        if ip and re.fullmatch(r"[\w-]{1,40}", ip):
            return f'{tag}[itemprop="{ip}"]'
        classes = [c for c in (e.get("class") or "").split() if re.fullmatch(r"[A-Za-z_][\w-]{0,50}", c)]
        return tag + "".join("." + c for c in classes[:2])

    own = one(el)
    if own.startswith("#"):
        return own
    parent = el.getparent()
    for _ in range(4):
        if parent is None or not isinstance(parent.tag, str) or parent.tag in ("body", "html"):
            break
        p = one(parent)
        if p.startswith("#") or "." in p:
            return f"{p} {own}"
        parent = parent.getparent()
    return own


# ---------------------------------------------------------------------------- the reader

class _Page:
    def __init__(self, doc, base: str, title_hint: str | None):
        self.doc = doc
        self.base = base
        self.host = (urlsplit(base).hostname or "").lower()
        self.title_hint = title_hint
        self.order: dict[Any, int] = {}
        self.excluded: set[Any] = set()
        self.hidden: set[Any] = set()      # hidden by markup (hidden, display:none)
        self.soft: set[Any] = set()        # inside a sidebar, modal, banner ... (weighs less)
        self.h1s: list[Any] = []
        self.atcs: list[tuple[Any, bool]] = []   # (element, disabled)
        self.texts: list[tuple[Any, str]] = []   # (element, own text) outside excluded parts
        self.imgs: list[Any] = []
        self.metas: dict[str, str] = {}
        self.scripts: list[Any] = []
        self.truncated = False
        # ancestors of the page's headings: a wrapper holding the product's title is
        # never left out, whatever its class says ("row-offcanvas", "header")
        self._holds_h1: set[int] = set()
        # lxml makes a new proxy per access: the ids stay unique only while the proxies
        # live, so they are kept (else a freed proxy's id matches another element)
        self._h1_anc: list[Any] = []
        for h in doc.iter("h1"):
            for a in h.iterancestors():
                if id(a) in self._holds_h1:
                    break
                self._holds_h1.add(id(a))
                self._h1_anc.append(a)
            if len(self._holds_h1) > 5000:
                break
        self._walk()

    # -- one pass over the document
    def _walk(self) -> None:
        """Walk the body once, skipping what is not the product (navigation, footer,
        cookie banners ... and their whole subtrees), scripts and styles."""
        from lxml import etree

        doc = self.doc
        for el in doc.iter("meta"):
            k = (el.get("property") or el.get("name") or el.get("itemprop") or "").lower()
            if k and el.get("content") and k not in self.metas:
                self.metas[k] = el.get("content")
            if len(self.metas) > 500:
                break
        for el in doc.iter("script"):
            typ = (el.get("type") or "").lower()
            if "json" in typ or not typ or typ == "text/javascript":
                self.scripts.append(el)
            if len(self.scripts) > 300:
                break
        self.h1s = list(itertools.islice(doc.iter("h1"), 50))
        body = doc.find("body")
        if body is None:
            body = doc
        hidden: list[bool] = []  # hidden flag per open element
        soft_stack: list[bool] = []  # inside a part that is probably not the product
        n = 0
        depth = 0
        walker = etree.iterwalk(body, events=("start", "end"))
        texts, order, hidden_set, holds = self.texts, self.order, self.hidden, self._holds_h1
        skip = _SKIP_TAGS
        for ev, el in walker:
            if ev == "end":
                depth -= 1
                hidden.pop()
                soft_stack.pop()
                continue
            depth += 1
            n += 1
            tag = el.tag
            if n > MAX_ELEMENTS or tag.__class__ is not str or tag in skip:
                if n > MAX_ELEMENTS:
                    self.truncated = True
                hidden.append(True)
                soft_stack.append(True)
                walker.skip_subtree()  # the end event still comes
                continue
            attrib = el.attrib
            soft = soft_stack[-1] if soft_stack else False
            if attrib or tag in _EXCLUDE_TAGS:
                ex = 0 if id(el) in holds else self._excluded(el, tag)
                if ex == 2:
                    self.excluded.add(el)
                    hidden.append(True)
                    soft_stack.append(True)
                    walker.skip_subtree()
                    continue
                soft = soft or ex == 1
                hid = (hidden[-1] if hidden else False) or "hidden" in attrib or \
                    bool(_HIDDEN.search(attrib.get("class") or "")) or \
                    bool(_HIDDEN_STYLE.search(attrib.get("style") or ""))
            else:
                hid = hidden[-1] if hidden else False
            hidden.append(hid)
            soft_stack.append(soft)
            if hid:
                hidden_set.add(el)
            if soft:
                self.soft.add(el)
            order[el] = n
            if tag == "img":
                self.imgs.append(el)
            elif tag in ("button", "input", "a", "form"):
                self._maybe_atc(el, tag)  # one in a soft part costs more as the buy box
            own = el.text or ""
            for ch in el:
                if ch.tail:
                    own += " " + ch.tail
            if own and not own.isspace():
                texts.append((el, own.strip()))

    def window(self, anchor, size: int) -> list[tuple[Any, str]]:
        """``size`` texts around ``anchor`` in document order (a third before it), or the
        first ``size`` without one."""
        if anchor is None or anchor not in self.order:
            return self.texts[:size]
        at = bisect.bisect_left([self.order[e] for e, _t in self.texts], self.order[anchor])
        start = max(0, min(at - size // 3, len(self.texts) - size))
        return self.texts[start:start + size]

    def _excluded(self, el, tag: str) -> int:
        """0: part of the page; 1: probably not the product (weighs less); 2: not the
        product (left out whole)."""
        if id(el) in self._holds_h1:
            return 0
        if tag in _EXCLUDE_TAGS:
            return 2
        role = (el.get("role") or "").lower()
        if role in _EXCLUDE_ROLES:
            return 2
        mark = ((el.get("class") or "") + " " + (el.get("id") or "")).lower()
        if not mark.strip() or tag in ("body", "html", "main"):
            return 0
        words = set(_WORD_SPLIT.split(mark))
        if words & {"product", "pdp", "buybox", "price"}:
            return 0
        if words & _EXCLUDE_WORDS or _EXCLUDE_JOINED.search(mark):
            return 2
        if words & _SOFT_WORDS:
            return 1
        return 0

    def _maybe_atc(self, el, tag: str) -> None:
        if tag == "form":
            action = (el.get("action") or "").lower()
            if re.search(r"cart|basket|warenkorb|panier|carrito|carrello|winkelwagen|kurv|"
                         r"korg|koszyk|checkout", action):
                self.atcs.append((el, False))
            return
        if tag == "a" and not _ATC_MARK.search(_marker(el)) and not (
                (el.get("title") or el.get("aria-label")) and
                _ATC_TEXT.search((el.get("title") or "") + " " + (el.get("aria-label") or ""))
                and re.search(r"cart|basket|korzin|ko[sš]ik|koszyk|warenkorb|panier",
                              (el.get("onclick") or "") + (el.get("href") or ""), re.I)):
            return
        label = " ".join(filter(None, [text_content(el)[:100] if tag != "input" else "",
                                       el.get("value") or "", el.get("title") or "",
                                       el.get("aria-label") or "", el.get("name") or ""]))
        mark = _marker(el)
        if _ATC_TEXT.search(label) or _ATC_MARK.search(mark):
            disabled = el.get("disabled") is not None or \
                (el.get("aria-disabled") or "").lower() == "true" or \
                bool(re.search(r"\bdisabled\b|sold-?out|unavailable|out-?of-?stock", mark))
            self.atcs.append((el, disabled))

    # -- tree geometry
    def ancestors(self, el, limit: int = ANCESTORS) -> list[Any]:
        out = []
        for a in el.iterancestors():
            out.append(a)
            if len(out) >= limit:
                break
        return out

    def distance(self, a, b) -> int:
        """Edges between two elements in the tree (capped)."""
        if a is None or b is None:
            return 99
        if a is b:
            return 0
        anc_a = [a] + self.ancestors(a)
        pos = {id(x): i for i, x in enumerate(anc_a)}
        for j, x in enumerate([b] + self.ancestors(b)):
            i = pos.get(id(x))
            if i is not None:
                return i + j
        return 99

    def contains(self, outer, inner) -> bool:
        if outer is None or inner is None:
            return False
        if outer is inner:
            return True
        for a in inner.iterancestors():
            if a is outer:
                return True
        return False

    # -- anchors
    def main_heading(self):
        hint = self.title_hint or self.metas.get("og:title") or ""
        title_el = self.doc.find(".//title")
        page_title = text_content(title_el) if title_el is not None else ""
        best, best_s = None, -1.0
        for h in self.h1s[:20]:
            t = text_content(h).strip()
            if not t or len(t) > 400:
                continue
            s = max(_similar(t, hint), _similar(t, page_title)) + (1 if h in self.order else 0)
            if s > best_s:
                best, best_s = h, s
        if best is None:
            # no <h1>: an element marked as the product title
            for el, _t in self.texts[:5000]:
                m = _marker(el)
                if re.search(r"product-?(title|name)|title-?product|productname|pdp-?title",
                             m) and el.tag not in ("a", "li"):
                    return el
        return best

    def buy_box(self, heading):
        cands = [(el, dis) for el, dis in self.atcs]
        if not cands:
            return None, False
        if heading is None:
            return cands[0]
        def cost(c) -> tuple:
            el = c[0]
            # a visible button over a form that only wraps one, over a hidden one
            named = _ATC_MARK.search((el.get("id") or "") + " " + (el.get("name") or ""))
            return (self.distance(heading, el) + (2 if el.tag == "form" else 0) +
                    (4 if el in self.hidden else 0) + (3 if el in self.soft else 0) -
                    (3 if named else 0),
                    abs(self.order.get(el, 0) - self.order.get(heading, 0)))

        return min(cands, key=cost)

    def region(self, heading, atc):
        """The smallest ancestor holding both anchors (or the heading's price block)."""
        if heading is not None and atc is not None:
            anc = set(map(id, [heading] + self.ancestors(heading, 200)))
            for a in [atc] + self.ancestors(atc, 200):
                if id(a) in anc:
                    if a.tag in ("html", "body"):
                        break
                    return a
        if heading is not None or atc is not None:
            start = heading if heading is not None else atc
            for a in self.ancestors(start, 12):
                if a.tag in ("html", "body"):
                    break
                txt = text_content(a)
                if len(txt) > 20000:
                    break
                if _MONEY.search(txt) and any(c in txt for c in _CURRENCY_SYMBOLS + "EURUSD"):
                    return a
        return None


def read_page(doc, base: str, title_hint: str | None = None,
              want: Iterable[str] = ("price", "availability", "sku", "images", "title"),
              text: str | None = None) -> PageRead:
    """Score candidates on a parsed page (lxml) and return the best read of each field.

    ``text`` (the page's HTML, when the caller has it) lets look-ups for attributes the
    page never mentions be skipped without walking the tree.
    """
    want = set(want)
    out = PageRead()
    if doc is None:
        return out
    pg = _Page(doc, base, title_hint)
    heading = pg.main_heading()
    atc, atc_disabled = pg.buy_box(heading)
    region = pg.region(heading, atc)
    visible_head = " ".join(t for _e, t in pg.texts[:400])[:6000]
    title_text = re.sub(r"\s+", " ", text_content(heading)).strip()[:500] \
        if heading is not None else None

    # pages that are no product page at all
    page_title = pg.doc.find(".//title")
    ptitle = text_content(page_title) if page_title is not None else ""
    if heading is None and atc is None and _CAPTCHA.search(ptitle + " " + visible_head[:2000]):
        out.blocked = "captcha or robot-check page"
        return out
    if heading is None and atc is None and _CONSENT.search(
            (text_content(pg.doc.find("body"))[:20000] if pg.doc.find("body") is not None
             else visible_head)):
        out.blocked = "consent wall (the page shows only a cookie/consent dialog)"
        return out
    if _NOT_FOUND.search(ptitle + " " + (title_text or "")) and atc is None:
        out.not_product = "the page says it was not found (soft 404)"
        return out

    if len(pg.texts) > MAX_TEXTS:  # bound the scoring: the texts around the product
        pg.texts = pg.window(atc if atc is not None else heading, MAX_TEXTS)

    if "title" in want and title_text:
        out.put("title", title_text, 0.8 if heading is not None and heading.tag == "h1" else 0.6,
                _selector(heading))

    state = _js_state(pg, title_text or title_hint)
    cands = _price_candidates(pg, heading, atc, region) if "price" in want else []
    if cands is not None and "price" in want:
        listing = _looks_like_listing(pg, cands, atc, heading)
        if listing:
            out.not_product = listing
            return out
        _choose_price(pg, cands, region, state, out)
    if "availability" in want:
        _choose_availability(pg, heading, atc, atc_disabled, region, state, out)
    if "sku" in want:
        _choose_sku(pg, heading, region, state, out, text)
    if "images" in want:
        _choose_images(pg, heading, region, title_text, state, out, atc)
    for k in ("gtin", "mpn", "brand"):
        if k in state.values and k not in out.values:
            out.put(k, state.values[k], state.confidence.get(k, 0.6), source="js-state")
    return out


# ---------------------------------------------------------------------------- price

def _price_candidates(pg: _Page, heading, atc, region) -> list[_Cand]:
    cands: list[_Cand] = []
    seen: set[int] = set()
    for el, own in pg.texts:
        if len(cands) >= MAX_CANDIDATES:
            break
        if not _HAS_DIGIT.search(own):
            continue
        # the element carrying the amount, or its marked parent (split prices)
        target = el
        mark = _marker(el)
        parent = el.getparent()
        if parent is not None and not _PRICE_MARK.search(mark) and \
                _PRICE_MARK.search(_marker(parent)) and parent in pg.order:
            target = parent
            mark = _marker(parent)
        if id(target) in seen:
            continue
        seen.add(id(target))
        if target is el and not _PRICE_MARK.search(mark) and not _CURRENCY_HINT.search(own) \
                and (el.get("itemprop") or "") != "price":
            continue  # neither marked as a price nor showing a currency: "Customer 17"
        text = _price_text(target)
        if len(text) > 120:
            text = own[:120]
        text = _with_sibling_cents(target, text)
        ms = [m for m in _MONEY.finditer(text) if m.group("num")]
        has_cur = [m for m in ms if m.group("pre") or m.group("post")]
        marked = bool(_PRICE_MARK.search(mark)) or (target.get("itemprop") or "") == "price"
        if not has_cur and not marked:
            continue
        if not has_cur:
            # a bare number counts only when it is all the element says ("38", "12,99*"),
            # not "5 Sterne", 'MSI 27" monitor' or "3 x 2 m"
            ms = [m for m in ms if len(re.sub(r"[\s*,.\-–:]", "", text.replace(
                m.group(0), "", 1))) <= 2]
            if not ms:
                continue
        use = has_cur or ms
        if len(use) != 1:
            if not use:
                continue
            # "€ 12,99 € 9,99": several amounts in one element; each scored on its own text
        for m in use[:3]:
            amount = parse_amount(m.group("num"))
            if amount is None or amount <= 0 or amount > Decimal("10000000"):
                continue
            cur = _currency_of(m.group("pre") or m.group("post"), pg.host)
            c = _Cand(target, amount, cur, text, order=pg.order.get(target, 0))
            before = text[:m.start()]
            after = text[m.end():m.end() + 30]
            _score(pg, c, mark, marked, bool(m.group("pre") or m.group("post")), before, after,
                   heading, atc, region, len(use))
            cands.append(c)
    return cands


def _with_sibling_cents(el, text: str) -> str:
    """``<span>192,</span><span>32</span><span>€</span>``: the cents (and the currency)
    in the next sibling elements joined to the whole amount."""
    if not re.search(r"\d[.,]?\s*$", text):
        return text
    nxt = el.getnext()
    if nxt is None or not isinstance(nxt.tag, str):
        return text
    cents = text_content(nxt).strip()
    if not re.fullmatch(r"[.,]?\d{2}", cents):
        return text
    text = re.sub(r"[.,]?\s*$", "", text) + "." + cents[-2:]
    after = nxt.getnext()
    if after is not None and isinstance(after.tag, str):
        cur = text_content(after).strip()
        if 0 < len(cur) <= 4 and not re.search(r"\d", cur):
            text += " " + cur
    return text


def _context_text(el, chars: int = 60) -> str:
    """Text just before an element (its previous sibling's or parent's), for cues like 'UVP'."""
    prev = el.getprevious()
    bits = []
    if prev is not None and isinstance(prev.tag, str):
        bits.append(text_content(prev)[-chars:])
        if prev.tail:
            bits.append(prev.tail)
    else:
        p = el.getparent()
        if p is not None and p.text:
            bits.append(p.text[-chars:])
    return " ".join(bits)[-chars:]


def _score(pg: _Page, c: _Cand, mark: str, marked: bool, has_cur: bool, before: str,
           after: str, heading, atc, region, n_amounts: int) -> None:
    el = c.el
    s = 0.0
    if marked:
        s += 1.5
    if (el.get("itemprop") or "") == "price" or "price" in (el.get("itemprop") or ""):
        s += 1.5
    if has_cur:
        s += 1.0
    if _CURRENT_MARK.search(mark) and marked:
        s += 0.5
    # crossed out / old price
    old = by_class = False
    for e in (el, el.getparent()):
        if e is None or not isinstance(e.tag, str):
            continue
        st = (e.get("style") or "").lower()
        if e.tag in ("del", "s", "strike") or "line-through" in st:
            old = True
        mk = _marker(e)
        if _OLD_MARK.search(mk) and not _NOW_MARK.search(mk):
            by_class = True
    ctx_before = (_context_text(el) + " " + before).strip()
    if _OLD_TEXT.search(ctx_before):
        old = True
    if _REF_TEXT.search(ctx_before) or any(
            e is not None and isinstance(e.tag, str) and _REF_MARK.search(_marker(e))
            for e in (el, el.getparent())):
        c.reference = old = True  # not the current price, and no regular price either
    c.old = old or by_class
    c.old_by_class = by_class and not old
    cue = (ctx_before[-40:] + " " + c.text + " " + after)
    if _UNIT_TEXT.search(c.text) or _UNIT_TEXT.search(after[:20]) or \
            re.search(r"unit-?price|base-?price|grundpreis|price-?per|per-?unit", mark):
        s -= 5
    if _INSTALMENT_TEXT.search(cue) or re.search(r"instal+ment|financ|klarna|monthly", mark):
        s -= 5
    if _SHIPPING_TEXT.search(cue) or re.search(r"shipping|delivery|versand|saving|discount|"
                                               r"coupon|voucher|bonus", mark):
        s -= 4
    if _OTHER_TEXT.search(ctx_before) or re.search(r"saving|bundle|together|other-?price|"
                                                   r"breadcrumb|crumb", mark):
        s -= 10   # another shop's price, a bundle's, a saving: never this product's price
    if _FILTER_TEXT.search(ctx_before):
        s -= 5    # "Less than $30", "bis 50 €": a price filter
    if _TRAIL.search(c.text):
        s -= 3
    if _FROM_TEXT.search(ctx_before) or re.search(r"price-?from|from-?price", mark):
        s -= 1.5
    if re.search(r"%", c.text) or re.search(r"\d\s*%", after[:4]):
        s -= 4
    if n_amounts > 1:
        s -= 0.5
    if el in pg.hidden:
        s -= 1.0
    if el in pg.soft and not (region is not None and pg.contains(region, el)):
        s -= 3.0
    # where it sits
    d_h = pg.distance(heading, el) if heading is not None else 99
    d_a = pg.distance(atc, el) if atc is not None else 99
    c.dist = min(d_h, d_a)
    c.in_region = region is not None and pg.contains(region, el)
    if c.in_region:
        s += 3.0
    s -= 0.25 * min(c.dist, 20)
    if heading is not None:
        delta = c.order - pg.order.get(heading, 0)
        if 0 <= delta <= 400:
            s += 0.5
        elif delta < -50:
            s -= 1.0
    c.score = s


def _choose_price(pg: _Page, cands: list[_Cand], region, state: PageRead, out: PageRead) -> None:
    current = [c for c in cands if not c.old and c.score > -2]
    if not any(c.in_region for c in current):
        # "regular-price" with no sale price beside it is the price itself: a price is
        # "old" by its class word only when a current one stands next to it
        weak = [c for c in cands if c.old_by_class and c.in_region and c.score > -2]
        if weak or not current:
            weak = weak or [c for c in cands if c.old_by_class and c.score > -2]
            for c in weak:
                c.old = False
            current += weak
    if region is not None:
        out.region_prices = sorted({c.amount for c in cands if c.in_region and c.score > -2})
    js_price = state.values.get("price")
    if js_price is not None:
        for c in current:
            if c.amount == js_price:
                c.score += 1.5
    meta_price = _meta_price(pg)
    if meta_price is not None:
        for c in current:
            if c.amount == meta_price:
                c.score += 1.5
    if not current:
        if js_price is not None:
            out.put("price", js_price, state.confidence.get("price", 0.5), source="js-state")
            if state.values.get("currency"):
                out.put("currency", state.values["currency"], 0.7, source="js-state")
        elif meta_price is not None:
            out.put("price", meta_price, 0.55, source="heuristic")
            cur = _meta_currency(pg)
            if cur:
                out.put("currency", cur, 0.6)
        return
    # best per amount
    by_amount: dict[Decimal, _Cand] = {}
    for c in current:
        b = by_amount.get(c.amount)
        if b is None or c.score > b.score or (c.score == b.score and c.order < b.order):
            by_amount[c.amount] = c
    ranked = sorted(by_amount.values(), key=lambda c: (-c.score, c.order))
    best = ranked[0]
    second = ranked[1].score if len(ranked) > 1 else best.score - 6
    gap = best.score - second
    conf = 0.45 + 0.08 * min(gap, 4) + (0.15 if best.in_region else 0) + \
        (0.1 if best.currency else 0) + (0.05 if best.score >= 5 else 0)
    if js_price is not None and js_price == best.amount or meta_price == best.amount:
        conf += 0.15
    if best.score < 1:
        conf = min(conf, 0.45)
    hint = _selector(best.el)
    out.put("price", best.amount, min(conf, 0.95), hint)
    cur = best.currency or _meta_currency(pg) or state.values.get("currency")
    if cur:
        out.put("currency", cur, 0.9 if best.currency else 0.6, hint)
    # a crossed-out regular price next to it: a sale
    olds = [c for c in cands if c.old and not c.reference and c.amount > best.amount and
            (c.in_region or pg.distance(c.el, best.el) <= 6) and c.score > -2]
    if olds:
        old = min(olds, key=lambda c: pg.distance(c.el, best.el))
        out.values["sale_price"] = best.amount
        out.values["price"] = old.amount
        out.confidence["sale_price"] = out.confidence["price"]
        out.sources["sale_price"] = "heuristic"
        out.hints["sale_price"] = hint
        out.hints["price"] = _selector(old.el)


def _meta_price(pg: _Page) -> Decimal | None:
    for k in ("product:price:amount", "og:price:amount", "price", "twitter:data1"):
        v = pg.metas.get(k)
        if v:
            m = _MONEY.search(v)
            if m:
                return parse_amount(m.group("num"))
    return None


def _meta_currency(pg: _Page) -> str | None:
    for k in ("product:price:currency", "og:price:currency", "pricecurrency", "currency"):
        v = pg.metas.get(k)
        if v:
            c = _currency_of(v, pg.host)
            if c:
                return c
    return None


# Weak hints, used only when no price on the page shows its currency.
_TLD_CURRENCY = {"uk": "GBP", "us": "USD", "ca": "CAD", "au": "AUD", "nz": "NZD", "ch": "CHF",
                 "pl": "PLN", "cz": "CZK", "hu": "HUF", "ru": "RUB", "ua": "UAH", "se": "SEK",
                 "no": "NOK", "dk": "DKK", "ro": "RON", "bg": "BGN", "jp": "JPY", "in": "INR",
                 "br": "BRL", "mx": "MXN", "tr": "TRY", "za": "ZAR", "sg": "SGD", "hk": "HKD",
                 "de": "EUR", "at": "EUR", "fr": "EUR", "es": "EUR", "it": "EUR", "nl": "EUR",
                 "be": "EUR", "fi": "EUR", "ie": "EUR", "pt": "EUR", "sk": "EUR", "si": "EUR",
                 "gr": "EUR", "ee": "EUR", "lv": "EUR", "lt": "EUR", "lu": "EUR", "hr": "EUR"}
_LANG_CURRENCY = {"pl": "PLN", "cs": "CZK", "hu": "HUF", "ru": "RUB", "uk": "UAH", "sv": "SEK",
                  "nb": "NOK", "no": "NOK", "da": "DKK", "ro": "RON", "bg": "BGN", "ja": "JPY",
                  "de": "EUR", "fr": "EUR", "es": "EUR", "it": "EUR", "nl": "EUR", "fi": "EUR",
                  "sk": "EUR", "pt-pt": "EUR", "en-gb": "GBP", "en-us": "USD", "en-ca": "CAD",
                  "en-au": "AUD", "de-ch": "CHF", "fr-ch": "CHF", "pt-br": "BRL", "tr": "TRY"}
_CURRENCY_WORDS = [  # "All prices in euro", "Prices in GBP", "Ceny w PLN"
    (re.compile(r"\b(euro|eur)\b", re.I), "EUR"),
    (re.compile(r"\b(pounds?\s+sterling|gbp)\b", re.I), "GBP"),
    (re.compile(r"\b(us\s+dollars?|usd)\b", re.I), "USD"),
    (re.compile(r"\b(złotych|pln)\b", re.I), "PLN"),
    (re.compile(r"\b(рублей|рубли|rub)\b", re.I), "RUB"),
    (re.compile(r"\b(forint|huf)\b", re.I), "HUF"),
    (re.compile(r"\b(korun|czk)\b", re.I), "CZK"),
]
_OUT_OF_STOCK_LOWER = re.compile(_AVAIL_PATTERNS[0][0].pattern)
# a word (stem) of every phrase that pattern knows, lower case
_OUT_OF_STOCK_STEMS = (
    "stock", "sold", "availab", "temporarily", "ausverkauft", "nicht", "vergriffen", "épuis",
    "epuis", "rupture", "dispon", "agotado", "esaurito", "voorraad", "uitverkocht", "leverbaar",
    "slut", "lager", "udsolgt", "utsolgt", "magazyn", "niedost", "wyprzeda", "esgotado",
    "estoque", "vyprod", "sklad", "rakt", "elfogyott", "varast", "tükendi", "stok", "налич",
    "распрод", "отсутств", "склад", "наявн", "відсутн", "在庫", "売り切れ", "缺货", "품절",
    "vypredan", "nedostupn", "brak", "készlet", "elérhet")
_STRIP_BLOCKS = re.compile(r"<(script|style|noscript|template)\b.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]{0,2000}>")
_BODY = re.compile(r"<body\b[^>]{0,2000}>", re.I)
_BLOCK_TAG = re.compile(r"<(?!/?(?:span|b|i|em|strong|sup|sub|small|font|a|u|s|del|ins|bdi|"
                        r"abbr|data)\b)[^>]{0,2000}>", re.I)   # a word break; inline tags none
_PRICES_IN = re.compile(r"(prices?|preise?|prix|precios?|ceny|cena|цены|árak|ceny)\s+"
                        r"(are\s+)?(in|en|w|v|в)\s+(\w+)", re.I)
_META_CUR = re.compile(r"(?:og:price:currency|product:price:currency|pricecurrency)[\"']?"
                       r"[^>]{0,80}?content\s*=\s*[\"']?([A-Za-z]{3})\b", re.I)
_HTML_LANG = re.compile(r"<html\b[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2}(?:-[A-Za-z]{2})?)", re.I)
CURRENCY_TEXT = 1_500_000   # characters of HTML looked at for a page's currency


STALE_STOCK_HTML = 20_000   # characters of HTML after the product's name looked at
STALE_STOCK_TEXT = 3_000    # ... and of their visible text


def says_out_of_stock(html: str, name: str | None) -> bool:
    """Whether the page shows an out-of-stock phrase in the text that follows the product's
    name in its body (scripts, styles and tags left out): a cheap test, before any tree is
    built, of whether a page whose structured data says "in stock" is worth reading for a
    buy box that says otherwise. Only a test: the reader decides, from where the phrase sits.
    A page whose body does not show the name as written is not looked at."""
    key = " ".join((name or "").split())[:24]
    if len(key) < 4:
        return False
    body = _BODY.search(html)
    at = body.end() if body else 0
    i = -1
    for k in dict.fromkeys((key, html_lib.escape(key, quote=False), html_lib.escape(key))):
        i = html.find(k, at)
        if i >= 0:
            break
    if i < 0:
        return False
    window = html[i:i + STALE_STOCK_HTML]
    bare = html_lib.unescape(_TAG.sub(" ", _STRIP_BLOCKS.sub(" ", window)))
    text = " ".join(bare.split()[:1000])[:STALE_STOCK_TEXT].lower()
    # the phrase pattern is slow on long text: it runs only around the words every
    # out-of-stock phrase contains (found by plain substring search)
    for stem in _OUT_OF_STOCK_STEMS:
        j = text.find(stem)
        while j >= 0:
            if _OUT_OF_STOCK_LOWER.search(text, max(0, j - 40), j + 60):
                return True
            j = text.find(stem, j + len(stem))
    return False


def page_currency(html: str, amount: Decimal | None, host: str = "") -> tuple[str | None, float]:
    """The currency of a price whose structured data or buy box gave none, from the page's
    own text: the amount shown with a sign or code first ("£87.50", "2 000 Ft", "870руб"),
    then the currency most of the page's prices show, then a meta tag naming it, "prices
    in euro", and only then the weak hints of the page's language and domain.
    Returns (ISO code or None, confidence)."""
    head = html[:CURRENCY_TEXT]
    visible = html_lib.unescape(_TAG.sub("", _BLOCK_TAG.sub(" ", _STRIP_BLOCKS.sub(" ", head))))
    exact: dict[str, int] = {}
    other: dict[str, int] = {}
    for i, m in enumerate(_MONEY.finditer(visible)):
        if i > 5000:
            break
        sign = m.group("pre") or m.group("post")
        if not sign:
            continue
        cur = _currency_of(sign, host)
        if not cur:
            continue
        if amount is not None and parse_amount(m.group("num")) == amount:
            exact[cur] = exact.get(cur, 0) + 1
        else:
            other[cur] = other.get(cur, 0) + 1
    if exact:
        return max(exact, key=lambda k: exact[k]), 0.85
    if other:
        return max(other, key=lambda k: other[k]), 0.7
    meta = _META_CUR.search(head)
    if meta:
        c = _currency_of(meta.group(1), host)
        if c:
            return c, 0.7
    for said in _PRICES_IN.finditer(visible[:500_000]):
        for pat, c in _CURRENCY_WORDS:
            if pat.fullmatch(said.group(4)):
                return c, 0.65
    tld = host.rsplit(".", 1)[-1] if "." in host else ""
    lm = _HTML_LANG.search(head[:5000])
    lang = lm.group(1).lower() if lm else ""
    if tld in _TLD_CURRENCY and tld not in ("us",):
        return _TLD_CURRENCY[tld], 0.5
    if lang in _LANG_CURRENCY or lang[:2] in _LANG_CURRENCY:
        return _LANG_CURRENCY.get(lang) or _LANG_CURRENCY[lang[:2]], 0.45
    return None, 0.0


def _looks_like_listing(pg: _Page, cands: list[_Cand], atc, heading) -> str | None:
    """A category or search page: many priced tiles and no price next to a buy box or
    the main heading."""
    priced = [c for c in cands if c.score > 0 and not c.old]
    amounts = {c.amount for c in priced}
    if len(amounts) < 6:
        return _small_listing(pg, priced, amounts)
    top = sorted(priced, key=lambda c: -c.score)[:80]
    by_heading = {c.amount for c in top if heading is not None and
                  pg.distance(c.el, heading) <= 7}
    if 1 <= len(by_heading) <= 3:
        return None  # the heading's own price (perhaps with an old and a unit price)
    # add-to-cart buttons that each sit next to a price: product tiles
    tiles = sum(1 for a, _d in pg.atcs[:40] if any(pg.distance(c.el, a) <= 6 for c in top))
    if pg.atcs and tiles < 4:
        return None
    return f"a category or search listing ({len(amounts)} different prices, no buy box)"


def _small_listing(pg: _Page, priced: list[_Cand], amounts: set) -> str | None:
    """A small category (two to five products): every add-to-cart button sits in a tile of
    its own with one price and a link (to its product), and no price is outside the tiles.
    A product page has one buy box; a second, sticky button links nowhere."""
    atcs = [a for a, _d in pg.atcs[:8]]
    if len(atcs) < 2 or not amounts:
        return None
    tiles: list[Any] = []
    inside: set[int] = set()
    for a in atcs:
        near = [c for c in priced if pg.distance(c.el, a) <= 3]
        if len(near) != 1:
            return None
        if id(near[0]) in inside:
            return None  # two buttons of one buy box (a form and its submit input)
        tile = next((x for x in pg.ancestors(a)[:3] if pg.contains(x, near[0].el)), None)
        if tile is None or any(tile is t for t in tiles) or not any(
                x.tag == "a" and x.get("href") for x in tile.iter()):
            return None
        tiles.append(tile)
        inside.add(id(near[0]))
    if any(id(c) not in inside for c in priced):
        return None
    return f"a category listing ({len(tiles)} products, each with its own price, button and link)"


# ---------------------------------------------------------------------------- availability

def _avail_of(text: str) -> tuple[Availability, str] | None:
    for rx, av in _AVAIL_PATTERNS:
        m = rx.search(text)
        if m:
            return av, m.group(0)
    return None


def _choose_availability(pg: _Page, heading, atc, atc_disabled: bool, region, state: PageRead,
                         out: PageRead) -> None:
    best = None   # (score, value, element)
    anchor = atc if atc is not None else heading
    seen: dict[str, tuple[Availability, str] | None] = {}  # a text repeated is matched once
    for el, own in pg.texts:
        # stock labels are short; reviews and FAQs (soft parts) talk about stock too
        if len(own) > 160 or el in pg.hidden or (el in pg.soft and not (
                region is not None and pg.contains(region, el))):
            continue
        hit = seen[own] if own in seen else seen.setdefault(own, _avail_of(own))
        if hit is None:
            continue
        av, phrase = hit
        mark = _marker(el)
        in_region = region is not None and pg.contains(region, el)
        d = pg.distance(anchor, el) if anchor is not None else 30
        s = (3.0 if in_region else 0.0) - 0.3 * min(d, 20) - (2.0 if el in pg.soft else 0.0)
        if re.search(r"avail|stock|lager|dispon|deliver|liefer|stock-?status|inventory|"
                     r"verfueg|verfüg", mark):
            s += 1.5
        if len(own) < 60:
            s += 0.5
        if av is not Availability.IN_STOCK and _VARIANT_TEXT.search(own):
            s -= 3   # "the selected size is no longer available": one variant, not the product
        if el.tag in ("option", "a", "li") and not in_region:
            s -= 2
        if av is Availability.IN_STOCK and re.fullmatch(r"(dis)?ponible|verfügbar|lieferbar",
                                                          phrase.lower()) and len(own) > 40:
            s -= 1   # a bare word in a sentence ("in 3 colours available")
        if best is None or s > best[0]:
            best = (s, av, el)
    if atc is not None and atc_disabled:
        out.put("availability", Availability.OUT_OF_STOCK,
                0.85 if best is None or best[1] is Availability.OUT_OF_STOCK else 0.6,
                _selector(atc))
        return
    if best is not None and atc is not None and best[0] < 1 and \
            best[1] is not Availability.IN_STOCK:
        best = None   # a far-off phrase does not outweigh this product's buy box
    if best is not None and best[0] > -3:
        s, av, el = best
        conf = 0.5 + min(s, 4) * 0.1
        if atc is not None and av is Availability.IN_STOCK:
            conf += 0.1
        if atc is not None and av is Availability.OUT_OF_STOCK and pg.contains(region, atc) and \
                s < 2:
            conf -= 0.2   # the buy box lets you order
        sv = state.values.get("availability")
        if sv is not None:
            conf += 0.1 if sv is av else -0.2
        out.put("availability", av, min(conf, 0.95), _selector(el))
        return
    sv = state.values.get("availability")
    if sv is not None:
        out.put("availability", sv, state.confidence.get("availability", 0.6), source="js-state")
        return
    opt = _option_stock(pg, region)
    if opt is not None:
        out.put("availability", opt[0], opt[1], opt[2])
        return
    if atc is not None:
        # an enabled add-to-cart button for this product: it can be ordered
        out.put("availability", Availability.IN_STOCK,
                0.75 if region is not None and pg.contains(region, atc) else 0.5,
                _selector(atc))


# a stock phrase about the chosen size or colour, not about the product
_VARIANT_TEXT = re.compile(
    r"(selected|chosen|this|that|your)\s+(size|colou?r|variant|option|combination)|"
    r"(gewünschte|gewählte|ausgewählte|diese)\s+(größe|grösse|farbe|variante|ausführung)|"
    r"(cette|la)\s+(taille|couleur|pointure)\s+(choisie|sélectionnée)?|"
    r"(esta|la)\s+(talla|color)\s+(seleccionad[ao])?|"
    r"(questa|la)\s+(taglia|misura)\s+(selezionata)?|(deze|gekozen)\s+(maat|kleur)|"
    r"(ten|wybrany)\s+rozmiar|(tato|zvolená)\s+velikost", re.I)


def _option_stock(pg: _Page, region) -> tuple[Availability, float, str] | None:
    """Stock shown per variant in a size/colour menu ("2 [In Stock]", "XL - sold out"):
    in stock when any variant is, out of stock when every labelled one is."""
    seen: list[Availability] = []
    where = ""
    for n, opt in enumerate(pg.doc.iter("option")):
        if n > 500:
            break
        sel = opt.getparent()
        while sel is not None and sel.tag != "select":
            sel = sel.getparent()
        holder = sel.getparent() if sel is not None else None
        if holder is None or holder not in pg.order or (
                region is not None and not pg.contains(region, holder) and holder in pg.soft):
            continue   # a menu in a left-out part (navigation, footer ...)
        hit = _avail_of(" ".join(filter(None, [opt.text, opt.get("value")]))[:160])
        if hit is not None:
            seen.append(hit[0])
            where = where or _selector(sel)
    if not seen:
        return None
    if Availability.IN_STOCK in seen:
        return Availability.IN_STOCK, 0.6, where
    if all(a is Availability.OUT_OF_STOCK for a in seen):
        return Availability.OUT_OF_STOCK, 0.55, where
    return None


# ---------------------------------------------------------------------------- SKU

def _choose_sku(pg: _Page, heading, region, state: PageRead, out: PageRead,
                text: str | None = None) -> None:
    best = None   # (score, value, conf, element)
    attrs = ("data-sku", "data-product-sku", "data-article-number", "data-artnr")
    marked = [] if text is not None and "data-sku" not in text and "data-product-sku" not in \
        text and "data-art" not in text else \
        pg.doc.xpath("//*[" + " or ".join(f"@{a}" for a in attrs) + "]")[:40]
    for el in marked:
        if el not in pg.order:
            continue
        for attr in attrs:
            v = (el.get(attr) or "").strip()
            if _SKU_VALUE.match(v):
                in_region = region is not None and pg.contains(region, el)
                cand = (2.0 + (2 if in_region else 0), v, 0.7 if in_region else 0.55, el)
                if best is None or cand[0] > best[0]:
                    best = cand
    attr_best = best
    for i, (el, own) in enumerate(pg.texts):
        if len(own) > 200 or (len(own) > 40 and ":" not in own and "#" not in own):
            continue
        label = own.strip().rstrip(":").strip()
        label = label if _SKU_LABELS[0][0].match(label) or _SKU_LABELS[1][0].match(label) \
            else label.rstrip(".:# ")
        value = None
        conf = 0.0
        for rx, c in _SKU_LABELS:
            lab, _, rest = own.partition(":")
            if rx.match(label):
                value = _next_value(pg, el, i, label)
                conf = c
                break
            if rest.strip() and rx.match(lab.strip()):
                value = _sku_value(rest.strip())
                if value:
                    conf = c
                break
        if value is None:
            m = _SKU_INLINE.search(own)
            if m:
                value = m.group(2)
                conf = 0.55 if m.group(1).lower().startswith("model") else 0.8
        if value is None and len(own) <= 40 and _SKU_MARK.search(_marker(el)):
            # no label, a class saying what it is: <span class="sku">HB095BLK</span>
            m = _SKU_VALUE.match(own.strip())
            if m and len(m.group(1)) >= len(own.strip()) - 1:
                value, conf = m.group(1), 0.7
        if not value or not (re.search(r"\d", value) or (
                conf >= 0.85 and re.fullmatch(r"[A-Z]{3,12}", value))):
            continue  # "Type: Underwear", "Ref: none": article numbers carry digits
            # (or are a short code in capitals: "Product code: PHLR")
        value = value.rstrip(".,;")
        in_region = region is not None and pg.contains(region, el)
        d = pg.distance(heading, el) if heading is not None else 30
        s = conf * 4 + (2 if in_region else 0) - 0.1 * min(d, 20) - \
            (1.5 if el in pg.soft else 0.0)
        if best is None or s > best[0]:
            best = (s, value, conf + (0.05 if in_region else 0), el)
    if best is not None and attr_best is not None and attr_best[1] != best[1] and \
            len(attr_best[1]) >= 5 and best[1].startswith(attr_best[1]):
        best = attr_best  # "Art.-Nr. 6109476094" shows the article 61094760 and a variant
    if best is not None:
        out.put("sku", best[1], min(best[2], 0.9), _selector(best[3]))
    elif state.values.get("sku"):
        out.put("sku", state.values["sku"], state.confidence.get("sku", 0.6), source="js-state")


def _is_label(t: str) -> bool:
    """'EAN:', 'Hersteller-Nr.': the next label, not a value."""
    t = t.strip()
    return t.endswith(":") or bool(re.match(r"^(ean|upc|gtin|isbn|mpn|sku|new|sale)\b", t, re.I)) \
        or any(rx.match(t.rstrip(".:# ")) for rx, _c in _SKU_LABELS)


def _sku_value(rest: str) -> str | None:
    """The article number at the start of the text after a label: one code ("UM9109-3462"),
    or a brand's words before it ("Treasure Garden UM9109-3462") when the code follows."""
    m = _SKU_VALUE.match(rest)
    if not m:
        return None
    if re.search(r"\d", m.group(1)):
        return m.group(1)
    words = re.match(r"^((?:[A-Z][\w&'-]*\s){1,3})([A-Za-z0-9][A-Za-z0-9\-_./]{2,40})", rest)
    if words and re.search(r"\d", words.group(2)) and re.search(r"[A-Z]", words.group(2)):
        return (words.group(1) + words.group(2)).strip()
    return m.group(1)


def _next_value(pg: _Page, el, i: int, label: str = "") -> str | None:
    """The value that follows a label: the rest of the element (``SKU: <span>X</span>``),
    the text right after the label (its tail), the next sibling cell (th/td, dt/dd, span),
    or the next text."""
    full = re.sub(r"\s+", " ", text_content(el)).strip()
    if len(full) < 80:
        at = full.lower().find(label.lower()) if label else -1
        rest = full[at + len(label):].lstrip(" .:#") if at >= 0 else (
            re.sub(r"^[^:#]*[:#]", "", full, count=1).strip() if re.search(r"[:#]", full)
            else "")
        v = _sku_value(rest)
        if v and re.search(r"\d", v):
            return v
    tail = re.sub(r"\s+", " ", el.tail or "").strip(" :#")
    if tail and len(tail) < 60:
        v = _sku_value(tail)
        if v:
            return v
    sib = el.getnext()
    for _ in range(3):  # past empty siblings (<meta>, <br>) to the value's cell
        if sib is None or not isinstance(sib.tag, str) or text_content(sib).strip():
            break
        sib = sib.getnext()
    for cell in (sib, el.getparent().getnext() if el.getparent() is not None else None):
        if cell is not None and isinstance(cell.tag, str):
            t = re.sub(r"\s+", " ", text_content(cell)).strip()
            m = _SKU_VALUE.match(t)
            if m and len(t) < 60 and not _is_label(t):
                return m.group(1)
    if i + 1 < len(pg.texts):
        t = pg.texts[i + 1][1]
        m = _SKU_VALUE.match(t)
        if m and len(t) < 60:
            return m.group(1)
    return None


# ---------------------------------------------------------------------------- images

_IMAGE_HREF = re.compile(r"\.(jpe?g|png|webp|avif)(\?|$)", re.I)


def _img_url(img, base: str) -> tuple[str | None, bool]:
    """The largest version an <img> names, and whether it came from a hi-res attribute
    (or the link around it that opens the large image: zoom and lightbox galleries)."""
    parent = img.getparent()
    if parent is not None and parent.tag == "a":
        href = (parent.get("href") or "").strip()
        if _IMAGE_HREF.search(href) and not href.startswith("data:"):
            return urljoin(base, href), True
    for a in _HIRES_ATTRS:
        v = img.get(a)
        if v and not v.startswith("data:") and not v.strip().startswith(("{", "[")):
            return urljoin(base, v.strip()), True
    dyn = img.get("data-a-dynamic-image")
    if dyn:
        try:
            sizes = json.loads(dyn)
            if isinstance(sizes, dict) and sizes:
                u = max(sizes, key=lambda k: (sizes[k][0] * sizes[k][1])
                        if isinstance(sizes[k], list) and len(sizes[k]) == 2 else 0)
                return urljoin(base, u), True
        except (ValueError, TypeError):
            pass
    for a in _LAZY_ATTRS:
        v = (img.get(a) or "").strip()
        if not v or v.startswith("data:"):
            continue
        if a.endswith("srcset"):
            v = v.split(",")[0].split()[0]
        return urljoin(base, v), False
    srcset = img.get("srcset")
    if srcset:
        best, bw = None, -1
        for part in srcset.split(","):
            bits = part.split()
            if not bits:
                continue
            w = re.match(r"(\d+)", bits[1]) if len(bits) > 1 else None
            width = int(w.group(1)) if w else 0
            if width > bw:
                best, bw = bits[0], width
        if best:
            return urljoin(base, best), False
    return None, False


_URL_SIZE = re.compile(r"(?<![\d.])(\d{2,4})[x_X](\d{2,4})(?![\d])")


def _choose_images(pg: _Page, heading, region, title: str | None, state: PageRead,
                   out: PageRead, atc=None) -> None:
    if not title:  # no heading: the page title names the product as well
        t = pg.doc.find(".//title")
        title = pg.title_hint or (text_content(t).split("|")[0].strip() if t is not None else None)
    og = pg.metas.get("og:image") or pg.metas.get("twitter:image")
    og_url = urljoin(pg.base, og) if og else None
    og_name = og_url.rsplit("/", 1)[-1].split("?")[0] if og_url else None
    scored = []
    for img in pg.imgs[:800]:
        url, hires = _img_url(img, pg.base)
        if not url or _BAD_IMG.search(urlsplit(url).path):
            continue   # the path only: "starcitygames.com" is no rating star
        mark = _marker(img) + " " + _marker(img.getparent()) if img.getparent() is not None \
            else _marker(img)
        near = " ".join((a.get("class") or "") for a in pg.ancestors(img, 4))
        if (_BAD_IMG.search(mark) and not _GALLERY_MARK.search(mark)) or \
                re.search(r"energ|efficien", mark + " " + near, re.I):
            continue  # a logo, icon, badge; an energy label
        s = 0.0
        try:
            w = int(re.sub(r"\D", "", img.get("width") or "") or 0)
            h = int(re.sub(r"\D", "", img.get("height") or "") or 0)
        except ValueError:
            w = h = 0
        if (w and w < 90) or (h and h < 90):
            s -= 3
        elif w >= 300 or h >= 300:
            s += 1
        if re.search(r"[_.-](ul|sr|ss|sx|sy)?(40|50|60|64|75|80|100|116|120|150|160)[_,.]", url,
                     re.I) and not hires:
            s -= 1
        dims = _URL_SIZE.search(url)
        if dims and not hires:
            side = min(int(dims.group(1)), int(dims.group(2)))
            s -= 1.5 if side < 200 else 0   # a thumbnail: "166_166_x.jpg"
        if hires:
            s += 1.5
        if _GALLERY_MARK.search(mark):
            s += 1.5
        if (img.get("itemprop") or "") == "image":
            s += 2
        alt = img.get("alt") or ""
        if title and alt and _similar(alt, title) >= 0.6:
            s += 2
        in_region = region is not None and pg.contains(region, img)
        if in_region:
            s += 2
        if img in pg.soft:
            s -= 2
        # how far from the heading (or, on a page without one, from the buy box)
        d = pg.distance(heading, img) if heading is not None else \
            pg.distance(atc, img) if atc is not None else 30
        s -= 0.12 * min(d, 25)
        name = url.rsplit("/", 1)[-1].split("?")[0]
        if og_name and name == og_name:
            s += 2
        if heading is not None and pg.order.get(img, 0) < pg.order.get(heading, 0) - 300:
            s -= 1
        scored.append((s, pg.order.get(img, 0), url, img))
    scored.sort(key=lambda t: (-t[0], t[1]))
    js_imgs = state.values.get("images") or []
    # a page without a heading places nothing well: a weaker best is still its photo
    if scored and scored[0][0] > (0 if heading is not None or og_url else -1):
        s, _o, url, img = scored[0]
        gap = s - scored[1][0] if len(scored) > 1 else 3
        conf = 0.5 + 0.07 * min(gap, 3) + (0.1 if s >= 4 else 0)
        gallery = [url] + [u for sc, _o2, u, _i in scored[1:12] if sc > s - 3 and u != url]
        out.put("images", list(dict.fromkeys(gallery))[:10], min(conf, 0.9), _selector(img) + "@src")
    elif og_url:
        out.put("images", [og_url], 0.6, 'meta[property="og:image"]@content')
    elif js_imgs:
        out.put("images", js_imgs[:10], state.confidence.get("images", 0.5), source="js-state")
    else:
        # Nothing that could be the product's image: as sure as the product's region is
        # clear (a page with a heading and a buy box but no image shows none).
        out.absent["images"] = 0.75 if region is not None and not scored else \
            0.6 if region is not None else 0.45


# ---------------------------------------------------------------------------- JS state

_ASSIGN = re.compile(r"(__NEXT_DATA__|__NUXT__|__INITIAL_STATE__|__PRELOADED_STATE__|__APOLLO_STATE__|"
                     r"__STATE__|__data|__INITIAL_DATA__|initialState|productData|product|meta|"
                     r"ShopifyAnalytics\.meta)\s*=\s*([\[{])")


def _js_state(pg: _Page, title: str | None) -> PageRead:
    """A product from embedded JavaScript state whose name matches the heading."""
    out = PageRead()
    if not pg.scripts:
        return out
    budget = [MAX_JSON_NODES]
    best = None   # (similarity, node)
    for sc in pg.scripts[:200]:
        text = sc.text or ""
        if len(text) < 20 or len(text) > MAX_SCRIPT or ("price" not in text and
                                                         "Price" not in text):
            continue  # no product state without a price (a cheap test in C)
        typ = (sc.get("type") or "").lower()
        blobs: list[Any] = []
        if "ld+json" in typ:
            continue
        if "json" in typ or sc.get("id") == "__NEXT_DATA__":
            try:
                blobs.append(json.loads(text))
            except ValueError:
                continue
        else:
            for m in list(_ASSIGN.finditer(text))[:5]:
                try:
                    obj, _end = json.JSONDecoder().raw_decode(text, m.start(2))
                    blobs.append(obj)
                except ValueError:
                    continue
        for blob in blobs:
            for node in _product_nodes(blob, budget):
                name = node.get("title") or node.get("name") or node.get("productName")
                if not isinstance(name, str):
                    continue
                sim = _similar(name, title) if title else 0.3
                if best is None or sim > best[0]:
                    best = (sim, node)
        if budget[0] <= 0:
            break
    if best is None or (title and best[0] < 0.5):
        return out
    sim, node = best
    base_conf = 0.75 if sim >= 0.8 else 0.55
    variants = [v for v in node.get("variants") or [] if isinstance(v, dict)][:200] \
        if isinstance(node.get("variants"), list) else []
    first = variants[0] if len(variants) == 1 else None
    shopify = "handle" in node and bool(variants)
    price = _js_money(node, shopify) if first is None else (_js_money(first, shopify) or
                                                            _js_money(node, shopify))
    if price is not None:
        out.put("price", price, base_conf, source="js-state")
    cur = node.get("currency") or node.get("currencyCode") or node.get("priceCurrency")
    if isinstance(cur, str):
        c = _currency_of(cur, pg.host)
        if c:
            out.put("currency", c, base_conf, source="js-state")
    sku = node.get("sku") or (first or {}).get("sku")
    if isinstance(sku, (str, int)) and str(sku).strip():
        out.put("sku", str(sku).strip(), base_conf, source="js-state")
    avail = None
    for k in ("available", "inStock", "isInStock", "in_stock", "availableForSale"):
        v = node.get(k) if k in node else (first or {}).get(k)
        if isinstance(v, bool):
            avail = Availability.IN_STOCK if v else Availability.OUT_OF_STOCK
            break
    if avail is None and variants:
        flags = [v.get("available") for v in variants if isinstance(v.get("available"), bool)]
        if flags:
            avail = Availability.IN_STOCK if any(flags) else Availability.OUT_OF_STOCK
    if avail is None:
        for k in ("availability", "stockStatus", "stock_status"):
            v = node.get(k)
            if isinstance(v, str):
                from auditor.values import parse_availability

                try:
                    avail = parse_availability(v.rsplit("/", 1)[-1])
                except ValueError:
                    hit = _avail_of(v)
                    avail = hit[0] if hit else None
                break
    if avail is not None:
        out.put("availability", avail, base_conf, source="js-state")
    imgs = []
    for k in ("images", "image", "featured_image", "featuredImage", "media"):
        v = node.get(k)
        for x in (v if isinstance(v, list) else [v])[:10]:
            if isinstance(x, dict):
                x = x.get("src") or x.get("url") or x.get("originalSrc")
            if isinstance(x, str) and re.search(r"\.(jpe?g|png|webp|avif)|/images?/", x, re.I):
                imgs.append(urljoin(pg.base, x if not x.startswith("//") else "https:" + x))
        if imgs:
            break
    if imgs:
        out.put("images", imgs, base_conf - 0.1, source="js-state")
    for k, keys in (("gtin", ("gtin", "gtin13", "ean", "barcode")), ("mpn", ("mpn",)),
                    ("brand", ("brand", "vendor", "manufacturer"))):
        for kk in keys:
            v = node.get(kk) if kk in node else (first or {}).get(kk)
            if isinstance(v, dict):
                v = v.get("name")
            if isinstance(v, (str, int)) and str(v).strip():
                out.put(k, str(v).strip(), base_conf, source="js-state")
                break
    return out


def _product_nodes(blob: Any, budget: list[int]) -> Iterable[dict]:
    stack = [(blob, 0)]
    while stack and budget[0] > 0:
        n, depth = stack.pop()
        budget[0] -= 1
        if depth > 30:
            continue
        if isinstance(n, dict):
            keys = n.keys()
            if ("title" in keys or "name" in keys or "productName" in keys) and \
                    ("price" in keys or "variants" in keys or "offers" in keys or
                     "prices" in keys or "priceRange" in keys) and \
                    ("sku" in keys or "id" in keys or "variants" in keys or "handle" in keys):
                yield n
            stack.extend((v, depth + 1) for v in list(n.values())[:500]
                         if isinstance(v, (dict, list)))
        elif isinstance(n, list):
            stack.extend((v, depth + 1) for v in n[:500] if isinstance(v, (dict, list)))


def _js_money(node: dict, cents: bool) -> Decimal | None:
    for k in ("salePrice", "sale_price", "currentPrice", "finalPrice", "price", "priceValue",
              "amount"):
        v = node.get(k)
        if isinstance(v, dict):
            v = v.get("value") or v.get("amount") or v.get("current") or v.get("centAmount")
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int):
            return (Decimal(v) / 100) if cents else Decimal(v)
        if isinstance(v, float):
            return Decimal(str(v))
        if isinstance(v, str):
            m = _MONEY.search(v)
            if m:
                return parse_amount(m.group("num"))
    return None
