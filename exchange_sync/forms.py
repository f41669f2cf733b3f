"""Forms of the exchange_sync admin pages."""

from __future__ import annotations

from typing import Any

from django import forms

from .sync.filters import FILTER_FIELDS, MAX_EXPRESSION_LENGTH, FilterError, validate_filter

FILTER_HELP_TEXT = (
    "Business Central filter syntax: EU|NA (either), <>EU (not), A..M (from A to M), "
    "A.. or ..M (open range), >=A&<=M (both), Lon* or *on* (wildcards), @lon* (ignore case), "
    "'' (blank), <>'' (not blank). Leave empty for no condition."
)


class ContactFilterForm(forms.Form):
    """Business Central's Set Sync Filter dialog: one optional expression per filterable field.

    Pass the stored filter as `initial`; after is_valid(), `filters` is the dict to store in
    ContactSyncSetup.contact_filter (empty fields left out).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters: dict[str, str] = {}
        for key, field in FILTER_FIELDS.items():
            if field.choices is not None:
                names = [choice.capitalize() for choice in field.choices]
                help_text = f"{' or '.join(names)} (in any case), e.g. {'|'.join(names)} or <>{names[0]}."
            else:
                help_text = FILTER_HELP_TEXT
            self.fields[key] = forms.CharField(
                label=field.caption, required=False, max_length=MAX_EXPRESSION_LENGTH, help_text=help_text
            )

    def clean(self) -> dict[str, Any]:
        cleaned_data = super().clean()
        # Each field on its own, so every bad expression gets its message, not just the first.
        for key in FILTER_FIELDS:
            if key not in cleaned_data:  # already refused by the field itself (too long)
                continue
            try:
                self.filters.update(validate_filter(filters={key: cleaned_data[key]}))
            except FilterError as error:
                self.add_error(key, str(error))
        return cleaned_data
