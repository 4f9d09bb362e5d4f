// The page's behaviour around Gradio's components (A1111's ui.js names where extensions use them): starting a
// generation as a task with a progress bar, re-attaching to it after a reload (🌀), Generate forever, keyboard
// shortcuts, switching tabs for "Send to", the token counters, and reading a dropped picture's infotext.

var desiredCheckpointName = '';
var runningTasks = {};
var generateForeverTimers = {};

function el(selector) {
    return gradioApp().querySelector(selector);
}

function localGet(key, fallback) {
    try {
        var value = localStorage.getItem(key);
        return value === null ? fallback : value;
    } catch (e) {
        return fallback;
    }
}

function localSet(key, value) {
    try {
        localStorage.setItem(key, value);
    } catch (e) {
        console.warn("localStorage is not available", e);
    }
}

function localRemove(key) {
    try {
        localStorage.removeItem(key);
    } catch (e) {
        console.warn("localStorage is not available", e);
    }
}

// While a job runs, Interrupt and Skip take Generate's place (style.css hides them otherwise).
function showSubmitButtons(tabname, show) {
    runningTasks[tabname] = !show;
    var box = el('#' + tabname + '_generate_box');
    if (box) {
        box.classList.toggle('generating', !show);
    }
    var interrupting = el('#' + tabname + '_interrupting');
    if (interrupting) {
        interrupting.classList.remove('shown');
    }
}

function showRestoreProgressButton(tabname, show) {
    var button = el('#' + tabname + '_restore_progress');
    if (button) {
        button.classList.toggle('shown', show);
    }
}

// [where the bar goes, where the live preview goes (over the gallery, outside Gradio's own elements)]
function progressContainers(tabname) {
    var container = el('#' + tabname + '_gallery_container') || el('#' + tabname + '_results_panel');
    return [container, el('#' + tabname + '_gallery') ? container : null];
}

// The Generate button's `js`: give the job a task id (the argument at idIndex) and follow its progress.
function submit_generation(tabname, args, idIndex) {
    var id = randomId();
    localSet(tabname + "_task_id", id);
    showSubmitButtons(tabname, false);
    var containers = progressContainers(tabname);
    requestProgress(id, containers[0], containers[1], function() {
        showSubmitButtons(tabname, true);
        localRemove(tabname + "_task_id");
        showRestoreProgressButton(tabname, false);
    });
    var res = Array.from(args);
    res[idIndex] = id;
    return res;
}

// 🌀: follow the task this browser started before the page was reloaded; its id goes to the server, which
// answers with the task's results when it is done.
function restore_progress(tabname) {
    showRestoreProgressButton(tabname, false);
    var id = localGet(tabname + "_task_id", "");
    if (id) {
        showSubmitButtons(tabname, false);
        var containers = progressContainers(tabname);
        requestProgress(id, containers[0], containers[1], function() {
            showSubmitButtons(tabname, true);
            localRemove(tabname + "_task_id");
        }, null, 3);
    }
    return [id];
}

function confirm_clear_prompt(prompt, negative_prompt) {
    if (confirm("Delete prompt?")) {
        return ["", ""];
    }
    return [prompt, negative_prompt];
}

function switch_to_img2img_tab(no) {
    switchToTab('img2img');
    var tries = 0;
    var select = function() {
        var buttons = gradioApp().querySelectorAll('#mode_img2img > .tab-wrapper button[role="tab"]');
        if (buttons.length > no) {
            buttons[no].click();
        } else if (tries++ < 50) {
            setTimeout(select, 50);
        }
    };
    select();
    return Array.from(arguments);
}

function switch_to_sketch() {
    return switch_to_img2img_tab(1);
}

function switch_to_inpaint() {
    return switch_to_img2img_tab(2);
}

function switch_to_inpaint_sketch() {
    return switch_to_img2img_tab(3);
}

function get_img2img_tab_index() {
    return get_tab_index('mode_img2img');
}

// Generate forever (Generate's context menu): press Generate again whenever the tab is idle.
function toggleGenerateForever(tabname) {
    if (generateForeverTimers[tabname]) {
        clearInterval(generateForeverTimers[tabname]);
        delete generateForeverTimers[tabname];
        return;
    }
    generateForeverTimers[tabname] = setInterval(function() {
        if (!runningTasks[tabname]) {
            var button = el('#' + tabname + '_generate');
            if (button) {
                button.click();
            }
        }
    }, 500);
    if (!runningTasks[tabname]) {
        el('#' + tabname + '_generate').click();
    }
}

function showContextMenu(event, tabname) {
    event.preventDefault();
    var old = document.getElementById('context-menu');
    if (old) {
        old.remove();
    }
    var menu = document.createElement('nav');
    menu.id = 'context-menu';
    menu.className = 'context-menu';
    menu.style.left = event.pageX + 'px';
    menu.style.top = event.pageY + 'px';
    var item = document.createElement('a');
    item.className = 'context-menu-item';
    item.textContent = generateForeverTimers[tabname] ? 'Cancel generate forever' : 'Generate forever';
    item.addEventListener('click', function() {
        menu.remove();
        toggleGenerateForever(tabname);
    });
    menu.appendChild(item);
    document.body.appendChild(menu);
    var close = function(e) {
        if (!menu.contains(e.target)) {
            menu.remove();
            document.removeEventListener('click', close);
        }
    };
    setTimeout(function() {
        document.addEventListener('click', close);
    }, 0);
}

function tabOfPrompt(textarea) {
    var block = textarea.closest('[id$="_prompt"], [id$="_neg_prompt"]');
    if (!block) {
        return null;
    }
    var match = block.id.match(/^(txt2img|img2img)_(neg_)?prompt$/);
    return match ? {tab: match[1], negative: !!match[2]} : null;
}

// The last prompt box the user was in, per tab (extra-network cards insert there).
var lastFocusedPrompt = {};

document.addEventListener('focusin', function(e) {
    if (e.target && e.target.tagName === 'TEXTAREA') {
        var where = tabOfPrompt(e.target);
        if (where) {
            lastFocusedPrompt[where.tab] = where.negative ? 'neg_prompt' : 'prompt';
        }
    }
});

document.addEventListener('keydown', function(e) {
    var target = e.target;
    if (!target || target.tagName !== 'TEXTAREA') {
        return;
    }
    var where = tabOfPrompt(target);
    if (!where) {
        return;
    }
    var button = null;
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        button = el('#' + where.tab + '_generate');
    } else if (e.key === 'Enter' && e.altKey) {
        button = el('#' + where.tab + '_skip');
    } else if (e.key === 'Escape') {
        button = el('#' + where.tab + '_interrupt');
    }
    if (button) {
        e.preventDefault();
        button.click();
    }
});

document.addEventListener('contextmenu', function(e) {
    var button = e.target && e.target.closest && e.target.closest('#txt2img_generate, #img2img_generate');
    if (button) {
        showContextMenu(e, button.id.replace('_generate', ''));
    }
});

// Token counters: count on the server (./internal/token-count) a moment after typing stops.
function debounce(func, wait) {
    var timer = null;
    return function() {
        clearTimeout(timer);
        timer = setTimeout(func, wait);
    };
}

function selectedStyles(tabname) {
    return Array.from(gradioApp().querySelectorAll('#' + tabname + '_styles .token span:first-child')).map(function(x) {
        return x.textContent.trim();
    }).filter(function(x) {
        return x;
    });
}

function updateTokenCounter(tabname, negative) {
    var textarea = el('#' + tabname + (negative ? '_neg_prompt' : '_prompt') + ' textarea');
    var counter = el('#' + tabname + (negative ? '_negative_token_counter' : '_token_counter'));
    if (!textarea || !counter) {
        return;
    }
    var steps = el('#' + tabname + '_steps input[type=number]');
    request("./internal/token-count", {
        text: textarea.value,
        steps: steps ? Number(steps.value) : 20,
        styles: selectedStyles(tabname),
        is_positive: !negative,
    }, function(res) {
        if (res.tokens === null || res.tokens === undefined) {
            return;
        }
        var span = document.createElement('span');
        span.textContent = res.tokens + '/' + res.limit;
        counter.replaceChildren(span);
        counter.classList.toggle('error', res.tokens > res.limit);
    });
}

function setupTokenCounters() {
    if (opts.disable_token_counters) {
        return;
    }
    ['txt2img', 'img2img'].forEach(function(tabname) {
        [false, true].forEach(function(negative) {
            var textarea = el('#' + tabname + (negative ? '_neg_prompt' : '_prompt') + ' textarea');
            if (!textarea || textarea.dataset.tokenCounter) {
                return;
            }
            textarea.dataset.tokenCounter = '1';
            var update = debounce(function() {
                updateTokenCounter(tabname, negative);
            }, 500);
            textarea.addEventListener('input', update);
            update();
        });
    });
}

// Dropping or pasting a picture onto a prompt hands it to the hidden file input next to it; the server reads
// its infotext into the prompt (A1111's behaviour: then ↙️ spreads it over the fields).
function handlePromptImage(textarea, files) {
    var where = tabOfPrompt(textarea);
    if (!where || !files || !files.length || !files[0].type.startsWith('image/')) {
        return false;
    }
    var input = el('#' + where.tab + '_prompt_image input[type="file"]');
    if (!input) {
        return false;
    }
    var transfer = new DataTransfer();
    transfer.items.add(files[0]);
    input.files = transfer.files;
    input.dispatchEvent(new Event('change', {bubbles: true}));
    return true;
}

document.addEventListener('dragover', function(e) {
    if (e.target && e.target.tagName === 'TEXTAREA' && tabOfPrompt(e.target) && e.dataTransfer &&
        Array.from(e.dataTransfer.types).includes('Files')) {
        e.preventDefault();
        e.dataTransfer.dropEffect = 'copy';
    }
});

document.addEventListener('drop', function(e) {
    if (e.target && e.target.tagName === 'TEXTAREA' && e.dataTransfer && handlePromptImage(e.target, e.dataTransfer.files)) {
        e.preventDefault();
        e.stopPropagation();
    }
}, true);

document.addEventListener('paste', function(e) {
    if (e.target && e.target.tagName === 'TEXTAREA' && e.clipboardData && e.clipboardData.files.length &&
        handlePromptImage(e.target, e.clipboardData.files)) {
        e.preventDefault();
    }
});

onUiLoaded(function() {
    ['txt2img', 'img2img'].forEach(function(tabname) {
        if (localGet(tabname + "_task_id", "")) {
            showRestoreProgressButton(tabname, true);
        }
    });
    setupTokenCounters();
});

onAfterUiUpdate(function() {
    setupTokenCounters();
});
