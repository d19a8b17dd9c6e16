"""The kiosk's text, per language. Every word a customer or staff member reads comes from here.

Each language has every key (a test checks it), so nothing falls back to
English in front of a customer. Reason keys (``reason_<key>``) are the slugs
stored in an answer's ``reasons``; :data:`REASONS` is the catalogue a survey
may pick from.
"""

from __future__ import annotations

#: Reason keys a survey may offer on the follow-up (stored as they are).
REASONS = ("wait_time", "friendliness", "expertise", "information", "outcome", "opening_hours",
           "accessibility", "other", "baggage_tracking", "baggage_delivery", "claim_process", "advice",
           "availability", "privacy", "check_in", "room", "cleanliness", "noise", "breakfast")

#: Ready-made sets of reasons for the desks DeskPulse serves (``survey.reason_preset``, or
#: ``reason_preset`` in a remote configuration). The names are also in sync/schema/config.v1.json.
PRESETS: dict[str, tuple[str, ...]] = {
    "service_desk": ("wait_time", "friendliness", "expertise", "outcome", "information", "opening_hours"),
    "luggage_office": ("wait_time", "baggage_tracking", "baggage_delivery", "claim_process", "friendliness",
                       "information"),
    "pharmacy": ("wait_time", "advice", "availability", "privacy", "friendliness", "opening_hours"),
    "hotel": ("check_in", "room", "cleanliness", "noise", "breakfast", "friendliness"),
}
DEFAULT_REASONS = ("wait_time", "friendliness", "expertise", "outcome")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "lang_name": "English",
        "question": "How was our service today?",
        "invite": "Tap a face to answer",
        "anonymous": "Answers are anonymous",
        "choose_lang": "Choose your language",
        "follow_up": "What could we do better?",
        "skip": "Skip",
        "language_word": "Language", "back": "Back", "change_answer": "Change answer",
        "thanks": "Thank you!",
        "thanks_body": "Your answer helps us improve.",
        "sorry": "Sorry, something went wrong",
        "sorry_body": "Your answer could not be saved. Please tell our staff.",
        "label_5_1": "Very poor", "label_5_2": "Poor", "label_5_3": "Okay",
        "label_5_4": "Good", "label_5_5": "Very good",
        "label_4_1": "Very poor", "label_4_2": "Poor", "label_4_3": "Good", "label_4_4": "Very good",
        "label_3_1": "Poor", "label_3_2": "Okay", "label_3_3": "Good",
        "reason_wait_time": "Waiting time", "reason_friendliness": "Friendliness",
        "reason_expertise": "Expertise", "reason_information": "Information",
        "reason_outcome": "Problem solved", "reason_opening_hours": "Opening hours",
        "reason_accessibility": "Accessibility", "reason_other": "Something else",
        "reason_baggage_tracking": "Tracking updates",
        "reason_baggage_delivery": "Getting my bag back",
        "reason_claim_process": "Claim forms",
        "reason_advice": "Advice",
        "reason_availability": "Medicine in stock",
        "reason_privacy": "Privacy",
        "reason_check_in": "Check-in / out",
        "reason_room": "Room",
        "reason_cleanliness": "Cleanliness",
        "reason_noise": "Noise",
        "reason_breakfast": "Breakfast",
    },
    "de": {
        "lang_name": "Deutsch",
        "question": "Wie war unser Service heute?",
        "invite": "Tippen Sie auf ein Gesicht",
        "anonymous": "Antworten sind anonym",
        "choose_lang": "Sprache wählen",
        "follow_up": "Was können wir besser machen?",
        "skip": "Überspringen",
        "language_word": "Sprache", "back": "Zurück", "change_answer": "Antwort ändern",
        "thanks": "Vielen Dank!",
        "thanks_body": "Ihre Antwort hilft uns, besser zu werden.",
        "sorry": "Entschuldigung, ein Fehler",
        "sorry_body": "Ihre Antwort wurde nicht gespeichert. Bitte sagen Sie es uns.",
        "label_5_1": "Sehr schlecht", "label_5_2": "Schlecht", "label_5_3": "Geht so",
        "label_5_4": "Gut", "label_5_5": "Sehr gut",
        "label_4_1": "Sehr schlecht", "label_4_2": "Schlecht", "label_4_3": "Gut", "label_4_4": "Sehr gut",
        "label_3_1": "Schlecht", "label_3_2": "Geht so", "label_3_3": "Gut",
        "reason_wait_time": "Wartezeit", "reason_friendliness": "Freundlichkeit",
        "reason_expertise": "Fachwissen", "reason_information": "Information",
        "reason_outcome": "Anliegen gelöst", "reason_opening_hours": "Öffnungszeiten",
        "reason_accessibility": "Barrierefreiheit", "reason_other": "Etwas anderes",
        "reason_baggage_tracking": "Infos zum Gepäck",
        "reason_baggage_delivery": "Gepäckrückgabe",
        "reason_claim_process": "Formulare",
        "reason_advice": "Beratung",
        "reason_availability": "Medikament vorrätig",
        "reason_privacy": "Diskretion",
        "reason_check_in": "Check-in / -out",
        "reason_room": "Zimmer",
        "reason_cleanliness": "Sauberkeit",
        "reason_noise": "Lärm",
        "reason_breakfast": "Frühstück",
    },
    "fr": {
        "lang_name": "Français",
        "question": "Comment était notre service aujourd’hui ?",
        "invite": "Touchez un visage pour répondre",
        "anonymous": "Les réponses sont anonymes",
        "choose_lang": "Choisissez votre langue",
        "follow_up": "Que pouvons-nous améliorer ?",
        "skip": "Passer",
        "language_word": "Langue", "back": "Retour", "change_answer": "Modifier",
        "thanks": "Merci !",
        "thanks_body": "Votre réponse nous aide à progresser.",
        "sorry": "Désolé, une erreur s’est produite",
        "sorry_body": "Votre réponse n’a pas été enregistrée. Merci de prévenir le personnel.",
        "label_5_1": "Très mauvais", "label_5_2": "Mauvais", "label_5_3": "Correct",
        "label_5_4": "Bien", "label_5_5": "Très bien",
        "label_4_1": "Très mauvais", "label_4_2": "Mauvais", "label_4_3": "Bien", "label_4_4": "Très bien",
        "label_3_1": "Mauvais", "label_3_2": "Correct", "label_3_3": "Bien",
        "reason_wait_time": "Attente", "reason_friendliness": "Amabilité",
        "reason_expertise": "Compétence", "reason_information": "Information",
        "reason_outcome": "Problème résolu", "reason_opening_hours": "Horaires",
        "reason_accessibility": "Accessibilité", "reason_other": "Autre chose",
        "reason_baggage_tracking": "Suivi du bagage",
        "reason_baggage_delivery": "Retour du bagage",
        "reason_claim_process": "Formulaires",
        "reason_advice": "Conseils",
        "reason_availability": "Médicament disponible",
        "reason_privacy": "Discrétion",
        "reason_check_in": "Arrivée / départ",
        "reason_room": "Chambre",
        "reason_cleanliness": "Propreté",
        "reason_noise": "Bruit",
        "reason_breakfast": "Petit-déjeuner",
    },
    "es": {
        "lang_name": "Español",
        "question": "¿Qué tal fue nuestro servicio hoy?",
        "invite": "Toque una cara para responder",
        "anonymous": "Las respuestas son anónimas",
        "choose_lang": "Elija su idioma",
        "follow_up": "¿Qué podemos mejorar?",
        "skip": "Omitir",
        "language_word": "Idioma", "back": "Volver", "change_answer": "Cambiar",
        "thanks": "¡Gracias!",
        "thanks_body": "Su respuesta nos ayuda a mejorar.",
        "sorry": "Lo sentimos, algo falló",
        "sorry_body": "Su respuesta no se pudo guardar. Avise a nuestro personal.",
        "label_5_1": "Muy mal", "label_5_2": "Mal", "label_5_3": "Regular",
        "label_5_4": "Bien", "label_5_5": "Muy bien",
        "label_4_1": "Muy mal", "label_4_2": "Mal", "label_4_3": "Bien", "label_4_4": "Muy bien",
        "label_3_1": "Mal", "label_3_2": "Regular", "label_3_3": "Bien",
        "reason_wait_time": "Espera", "reason_friendliness": "Amabilidad",
        "reason_expertise": "Conocimiento", "reason_information": "Información",
        "reason_outcome": "Problema resuelto", "reason_opening_hours": "Horario",
        "reason_accessibility": "Accesibilidad", "reason_other": "Otra cosa",
        "reason_baggage_tracking": "Seguimiento",
        "reason_baggage_delivery": "Entrega del equipaje",
        "reason_claim_process": "Formularios",
        "reason_advice": "Asesoramiento",
        "reason_availability": "Medicamento disponible",
        "reason_privacy": "Privacidad",
        "reason_check_in": "Entrada / salida",
        "reason_room": "Habitación",
        "reason_cleanliness": "Limpieza",
        "reason_noise": "Ruido",
        "reason_breakfast": "Desayuno",
    },
    "uk": {
        "lang_name": "Українська",
        "question": "Як вам наше обслуговування сьогодні?",
        "invite": "Торкніться обличчя, щоб відповісти",
        "anonymous": "Відповіді анонімні",
        "choose_lang": "Оберіть мову",
        "follow_up": "Що нам покращити?",
        "skip": "Пропустити",
        "language_word": "Мова", "back": "Назад", "change_answer": "Змінити",
        "thanks": "Дякуємо!",
        "thanks_body": "Ваша відповідь допомагає нам ставати кращими.",
        "sorry": "Вибачте, сталася помилка",
        "sorry_body": "Вашу відповідь не збережено. Будь ласка, скажіть персоналу.",
        "label_5_1": "Дуже погано", "label_5_2": "Погано", "label_5_3": "Нормально",
        "label_5_4": "Добре", "label_5_5": "Дуже добре",
        "label_4_1": "Дуже погано", "label_4_2": "Погано", "label_4_3": "Добре", "label_4_4": "Дуже добре",
        "label_3_1": "Погано", "label_3_2": "Нормально", "label_3_3": "Добре",
        "reason_wait_time": "Очікування", "reason_friendliness": "Привітність",
        "reason_expertise": "Компетентність", "reason_information": "Інформація",
        "reason_outcome": "Вирішення питання", "reason_opening_hours": "Години роботи",
        "reason_accessibility": "Доступність", "reason_other": "Інше",
        "reason_baggage_tracking": "Відстеження багажу",
        "reason_baggage_delivery": "Повернення багажу",
        "reason_claim_process": "Оформлення заяви",
        "reason_advice": "Консультація",
        "reason_availability": "Наявність ліків",
        "reason_privacy": "Конфіденційність",
        "reason_check_in": "Заселення / виїзд",
        "reason_room": "Номер",
        "reason_cleanliness": "Чистота",
        "reason_noise": "Шум",
        "reason_breakfast": "Сніданок",
    },
    "el": {
        "lang_name": "Ελληνικά",
        "question": "Πώς ήταν η εξυπηρέτηση σήμερα;",
        "invite": "Αγγίξτε ένα πρόσωπο για να απαντήσετε",
        "anonymous": "Οι απαντήσεις είναι ανώνυμες",
        "choose_lang": "Επιλέξτε γλώσσα",
        "follow_up": "Τι μπορούμε να βελτιώσουμε;",
        "skip": "Παράλειψη",
        "language_word": "Γλώσσα", "back": "Πίσω", "change_answer": "Αλλαγή",
        "thanks": "Ευχαριστούμε!",
        "thanks_body": "Η απάντησή σας μας βοηθά να βελτιωθούμε.",
        "sorry": "Λυπούμαστε, κάτι πήγε στραβά",
        "sorry_body": "Η απάντησή σας δεν αποθηκεύτηκε. Ενημερώστε το προσωπικό.",
        "label_5_1": "Πολύ κακή", "label_5_2": "Κακή", "label_5_3": "Μέτρια",
        "label_5_4": "Καλή", "label_5_5": "Πολύ καλή",
        "label_4_1": "Πολύ κακή", "label_4_2": "Κακή", "label_4_3": "Καλή", "label_4_4": "Πολύ καλή",
        "label_3_1": "Κακή", "label_3_2": "Μέτρια", "label_3_3": "Καλή",
        "reason_wait_time": "Αναμονή", "reason_friendliness": "Ευγένεια",
        "reason_expertise": "Γνώσεις", "reason_information": "Πληροφόρηση",
        "reason_outcome": "Επίλυση θέματος", "reason_opening_hours": "Ωράριο",
        "reason_accessibility": "Προσβασιμότητα", "reason_other": "Κάτι άλλο",
        "reason_baggage_tracking": "Ενημέρωση για αποσκευή",
        "reason_baggage_delivery": "Παράδοση αποσκευής",
        "reason_claim_process": "Έντυπα",
        "reason_advice": "Συμβουλές",
        "reason_availability": "Διαθεσιμότητα φαρμάκου",
        "reason_privacy": "Ιδιωτικότητα",
        "reason_check_in": "Άφιξη / αναχώρηση",
        "reason_room": "Δωμάτιο",
        "reason_cleanliness": "Καθαριότητα",
        "reason_noise": "Θόρυβος",
        "reason_breakfast": "Πρωινό",
    },
}

#: The languages shipped, in the order the language screen lists them.
LANGUAGES = tuple(TEXTS)


#: The staff screens' words (PIN pad, status screen). Staff screens are English only for
#: now; the keys are here so a translation is a table away, not a code change.
STAFF_TEXTS: dict[str, str] = {
    "pin_title": "Staff PIN",
    "pin_ok": "OK",
    "test_mode_on": "Test mode: on",
    "test_mode_off": "Test mode: off",
    "close": "Close",
    "cancel": "Cancel",
    "quit": "Quit kiosk",
    "status_title": "DeskPulse {site}/{device}",
    "line_identity": "Site / device",
    "line_version": "Version",
    "line_broker": "Broker",
    "line_backlog": "Backlog",
    "line_last_sync": "Last sync",
    "line_today": "Answers today",
    "line_ip": "IP address",
    "line_test_mode": "Test mode",
    "line_sender": "Sender",
    "line_alarms": "Alarms",
    "test_band": "TEST MODE · answers are flagged test · ends in {minutes} min",
}


def staff(key: str, **values: object) -> str:
    """A staff screen's text, with ``{name}`` fields filled from ``values``."""
    return STAFF_TEXTS[key].format(**values) if values else STAFF_TEXTS[key]


def text(lang: str, key: str) -> str:
    """The text for ``key`` in ``lang``, falling back to English."""
    return TEXTS.get(lang, TEXTS["en"]).get(key) or TEXTS["en"][key]


def labels(lang: str, scale: int) -> tuple[str, ...]:
    """Face labels for a scale, worst first."""
    return tuple(text(lang, f"label_{scale}_{r}") for r in range(1, scale + 1))


def reason(lang: str, key: str) -> str:
    """The label of a reason chip."""
    return text(lang, f"reason_{key}")
