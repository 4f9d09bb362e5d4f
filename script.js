// The page globals A1111 extensions rely on (A1111's script.js / ui.js names), on Gradio 6's DOM.
// Loaded first in the page head; extensions' javascript/*.js files come after it.

function gradioApp() {
    const elems = document.getElementsByTagName('gradio-app');
    const elem = elems.length === 0 ? document : elems[0];
    if (elem !== document) {
        elem.getElementById = function(id) {
            return document.getElementById(id);
        };
    }
    return elem.shadowRoot ? elem.shadowRoot : elem;
}

// The selected main tab's button, and its content panel.
function get_uiCurrentTab() {
    return gradioApp().querySelector('#tabs > .tab-wrapper button[role="tab"][aria-selected="true"]') ||
        gradioApp().querySelector('#tabs button[role="tab"].selected');
}

function get_uiCurrentTabContent() {
    const panels = gradioApp().querySelectorAll('#tabs > .tabitem[id^="tab_"]');
    for (const panel of panels) {
        if (panel.offsetParent !== null || getComputedStyle(panel).display !== 'none') {
            return panel;
        }
    }
    return null;
}

var uiUpdateCallbacks = [];
var uiAfterUpdateCallbacks = [];
var uiLoadedCallbacks = [];
var uiTabChangeCallbacks = [];
var optionsChangedCallbacks = [];
var optionsAvailableCallbacks = [];
var uiAfterUpdateTimeout = null;
var uiCurrentTab = null;
var opts = {};
var lastOptionsText = null;

// Called on every change of the page's DOM, with the MutationRecords.
function onUiUpdate(callback) {
    uiUpdateCallbacks.push(callback);
}

// Called once after a burst of DOM changes (cheaper than onUiUpdate).
function onAfterUiUpdate(callback) {
    uiAfterUpdateCallbacks.push(callback);
}

// Called once, when the UI is built.
function onUiLoaded(callback) {
    uiLoadedCallbacks.push(callback);
}

function onUiTabChange(callback) {
    uiTabChangeCallbacks.push(callback);
}

// Called when the settings (opts) change, and once when they are first available.
function onOptionsChanged(callback) {
    optionsChangedCallbacks.push(callback);
}

function onOptionsAvailable(callback) {
    if (Object.keys(opts).length !== 0) {
        callback();
        return;
    }
    optionsAvailableCallbacks.push(callback);
}

function executeCallbacks(queue, arg) {
    for (const callback of queue) {
        try {
            callback(arg);
        } catch (e) {
            console.error("error running callback", callback, ":", e);
        }
    }
}

function scheduleAfterUiUpdateCallbacks() {
    clearTimeout(uiAfterUpdateTimeout);
    uiAfterUpdateTimeout = setTimeout(function() {
        executeCallbacks(uiAfterUpdateCallbacks);
    }, 200);
}

// Tell Gradio that a value was changed by script (Gradio listens for input events).
function updateInput(target) {
    const e = new Event("input", {bubbles: true});
    Object.defineProperty(e, "target", {value: target});
    target.dispatchEvent(e);
}

function uiElementIsVisible(el) {
    if (el === document) {
        return true;
    }
    const computedStyle = getComputedStyle(el);
    const isVisible = computedStyle.display !== 'none';
    if (!isVisible) {
        return false;
    }
    return el.parentNode ? uiElementIsVisible(el.parentNode) : true;
}

function uiElementInSight(el) {
    const clRect = el.getBoundingClientRect();
    const windowHeight = window.innerHeight;
    return clRect.top <= windowHeight && clRect.bottom >= 0;
}

function get_tab_index(tabId) {
    const buttons = gradioApp().querySelectorAll('#' + tabId + ' button[role="tab"]');
    for (let i = 0; i < buttons.length; i++) {
        if (buttons[i].getAttribute('aria-selected') === 'true' || buttons[i].classList.contains('selected')) {
            return i;
        }
    }
    return 0;
}

function switchToTab(label) {
    const buttons = gradioApp().querySelectorAll('#tabs button[role="tab"]');
    for (const button of buttons) {
        if (button.textContent.trim() === label) {
            button.click();
            return;
        }
    }
}

function switch_to_txt2img() {
    switchToTab('txt2img');
    return Array.from(arguments);
}

function switch_to_img2img() {
    switchToTab('img2img');
    return Array.from(arguments);
}

function switch_to_extras() {
    switchToTab('Extras');
    return Array.from(arguments);
}

// Read `opts` from the hidden settings JSON the Settings tab keeps up to date.
function readOptions() {
    const elem = gradioApp().querySelector('#settings_json textarea, #settings_json input');
    if (!elem || !elem.value || elem.value === lastOptionsText) {
        return;
    }
    lastOptionsText = elem.value;
    let data;
    try {
        data = JSON.parse(elem.value);
    } catch (e) {
        return;
    }
    const first = Object.keys(opts).length === 0;
    opts = data;
    if (first) {
        executeCallbacks(optionsAvailableCallbacks);
        optionsAvailableCallbacks = [];
    }
    executeCallbacks(optionsChangedCallbacks);
}

// Shown while the server restarts (Extensions tab: Apply and restart); reloads when it answers again.
function restart_reload() {
    document.body.style.backgroundColor = "var(--background-fill-primary)";
    document.body.innerHTML = '<h1 style="font-family:monospace;margin-top:20%;color:lightgray;text-align:center;">Reloading...</h1>';
    const ping = function() {
        fetch(window.location.href, {cache: "no-store"}).then(function(response) {
            if (response.ok) {
                location.reload();
            } else {
                setTimeout(ping, 500);
            }
        }).catch(function() {
            setTimeout(ping, 500);
        });
    };
    setTimeout(ping, 2000);
    return [];
}

// Extensions tab, Available: an Install button fills the URL field and presses the real Install button.
function install_extension_from_index(button, url) {
    button.disabled = true;
    button.textContent = "Installing...";
    const textarea = gradioApp().querySelector('#extension_to_install textarea, #extension_to_install input');
    textarea.value = url;
    updateInput(textarea);
    setTimeout(function() {
        gradioApp().querySelector('#install_extension_button').click();
    }, 100);
}

// Translate the page's texts with window.localization (set in the head from the chosen localization).
function translateNode(node) {
    const map = window.localization || {};
    if (!Object.keys(map).length) {
        return;
    }
    const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
    let text;
    while ((text = walker.nextNode())) {
        const key = text.textContent.trim();
        if (key && Object.prototype.hasOwnProperty.call(map, key)) {
            text.textContent = text.textContent.replace(key, map[key]);
        }
    }
    node.querySelectorAll && node.querySelectorAll('[placeholder], [title]').forEach(function(el) {
        for (const attr of ['placeholder', 'title']) {
            const value = el.getAttribute(attr);
            if (value && Object.prototype.hasOwnProperty.call(map, value)) {
                el.setAttribute(attr, map[value]);
            }
        }
    });
}

(function() {
    let executedOnLoaded = false;
    // Gradio dispatches "render" once the page is mounted and its values are bound; values set by script before
    // that are lost, so onUiLoaded waits for it or, when it came before this script, for a second without DOM
    // changes (at most five seconds after the prompt appeared).
    let rendered = false;
    let fallback = null;
    let firstSeen = null;
    const uiLoaded = function() {
        if (executedOnLoaded || !gradioApp().querySelector('#txt2img_prompt')) {
            return;
        }
        executedOnLoaded = true;
        clearTimeout(fallback);
        readOptions();
        translateNode(document.body);
        executeCallbacks(uiLoadedCallbacks);
    };
    document.addEventListener('render', function() {
        rendered = true;
        uiLoaded();
    }, true);
    const observer = new MutationObserver(function(mutations) {
        if (!executedOnLoaded && gradioApp().querySelector('#txt2img_prompt')) {
            firstSeen = firstSeen || Date.now();
            if (rendered || Date.now() - firstSeen > 5000) {
                uiLoaded();
            } else {
                clearTimeout(fallback);
                fallback = setTimeout(uiLoaded, 1000);
            }
        }
        if (executedOnLoaded) {
            readOptions();
            for (const m of mutations) {
                m.addedNodes.forEach(function(n) {
                    if (n.nodeType === 1) {
                        translateNode(n);
                    }
                });
            }
        }
        executeCallbacks(uiUpdateCallbacks, mutations);
        scheduleAfterUiUpdateCallbacks();
        const newTab = get_uiCurrentTab();
        if (newTab && newTab !== uiCurrentTab) {
            uiCurrentTab = newTab;
            executeCallbacks(uiTabChangeCallbacks);
        }
    });
    const start = function() {
        observer.observe(document.body, {childList: true, subtree: true, characterData: false});
    };
    if (document.body) {
        start();
    } else {
        document.addEventListener("DOMContentLoaded", start);
    }
})();
