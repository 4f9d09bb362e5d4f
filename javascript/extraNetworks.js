// Extra-network cards: clicking a card adds its text to the tab's last focused prompt (or removes it when it is
// already there); a checkpoint card switches the model; ⓘ shows the file's metadata; the search box filters.

function extraNetworksPromptArea(tabname, useNegative) {
    var which = useNegative ? 'neg_prompt' : 'prompt';
    return el('#' + tabname + '_' + which + ' textarea');
}

// A tag like <lora:name:0.8> is found (and removed) whatever its weight.
function extraNetworksTagPattern(text) {
    var match = text.match(/^<([^:>]+):([^:>]+)(:[^>]*)?>/);
    if (!match) {
        return null;
    }
    var escape = function(s) {
        return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    };
    return new RegExp('\\s*<' + escape(match[1]) + ':' + escape(match[2]) + '(:[^>]*)?>');
}

function extraNetworksToggleText(textarea, text) {
    if (!textarea || !text) {
        return;
    }
    var separator = (opts.extra_networks_add_text_separator === undefined) ? ' ' : opts.extra_networks_add_text_separator;
    var pattern = extraNetworksTagPattern(text);
    var value = textarea.value;
    if (pattern && pattern.test(value)) {
        value = value.replace(pattern, '').trim();
    } else if (!pattern && value.includes(text)) {
        value = value.replace(text, '').replace(/\s{2,}/g, ' ').trim();
    } else {
        value = value.trim() ? value.replace(/\s+$/, '') + separator + text : text;
    }
    textarea.value = value;
    updateInput(textarea);
}

function extraNetworksShowMetadata(page, name) {
    var url = './sd_extra_networks/metadata?' + new URLSearchParams({page: page, item: name}).toString();
    fetch(url, {credentials: 'same-origin'}).then(function(r) {
        return r.json();
    }).then(function(res) {
        var old = document.getElementById('extra-network-metadata-popup');
        if (old) {
            old.remove();
        }
        var popup = document.createElement('div');
        popup.id = 'extra-network-metadata-popup';
        popup.className = 'global-popup';
        var inner = document.createElement('div');
        inner.className = 'global-popup-inner';
        var close = document.createElement('div');
        close.className = 'global-popup-close';
        close.textContent = '×';
        close.addEventListener('click', function() {
            popup.remove();
        });
        var body = document.createElement('div');
        body.innerHTML = res.html; // escaped by the server
        inner.appendChild(close);
        inner.appendChild(body);
        popup.appendChild(inner);
        popup.addEventListener('click', function(e) {
            if (e.target === popup) {
                popup.remove();
            }
        });
        document.body.appendChild(popup);
    }).catch(function(e) {
        console.warn('Could not read metadata', e);
    });
}

document.addEventListener('click', function(e) {
    var card = e.target && e.target.closest && e.target.closest('.extra-network-card');
    if (!card) {
        return;
    }
    var container = card.closest('.extra-network-cards');
    var tabname = container ? container.dataset.tabname : 'txt2img';
    if (e.target.closest('.metadata-button')) {
        e.stopPropagation();
        extraNetworksShowMetadata(card.dataset.page, card.dataset.name);
        return;
    }
    if (card.dataset.checkpoint) {
        desiredCheckpointName = card.dataset.checkpoint;
        var button = gradioApp().getElementById('change_checkpoint');
        if (button) {
            button.click();
        }
        return;
    }
    var negative = card.dataset.allowNegative && lastFocusedPrompt[tabname] === 'neg_prompt';
    extraNetworksToggleText(extraNetworksPromptArea(tabname, negative), card.dataset.prompt);
    if (card.dataset.negativePrompt) {
        extraNetworksToggleText(extraNetworksPromptArea(tabname, true), card.dataset.negativePrompt);
    }
});

document.addEventListener('input', function(e) {
    var box = e.target && e.target.closest && e.target.closest('.extra-network-search');
    if (!box || !box.id.endsWith('_extra_search')) {
        return;
    }
    var query = e.target.value.toLowerCase().trim();
    var cards = gradioApp().querySelectorAll('#' + box.id.replace(/_extra_search$/, '_cards_html') + ' .extra-network-card');
    cards.forEach(function(card) {
        card.classList.toggle('hidden-by-search', !!query && !(card.dataset.search || '').includes(query));
    });
});
