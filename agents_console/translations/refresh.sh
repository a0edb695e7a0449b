#!/bin/sh
# Re-extract the console's strings, merge them into every catalog and compile the .mo files.
# Run from anywhere: sh agents_console/translations/refresh.sh  (then translate the new
# empty msgstr entries in en/LC_MESSAGES/messages.po and run it once more to compile).
set -eu
cd "$(dirname "$0")/../.."
T=agents_console/translations
PYBABEL=${PYBABEL:-.venv/bin/pybabel}
"$PYBABEL" extract -F "$T/babel.cfg" -k _l -k lazy_gettext --no-location --sort-output \
    --project "Health Hotline console" --copyright-holder "Health Hotline contributors" \
    -o "$T/messages.pot" .
"$PYBABEL" update -i "$T/messages.pot" -d "$T" --no-wrap --no-fuzzy-matching --ignore-obsolete
"$PYBABEL" compile -d "$T" --statistics
