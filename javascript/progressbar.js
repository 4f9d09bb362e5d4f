// Progress of a generation over the gallery: a bar with the fraction done, step counts and ETA, and the live
// preview, from POST ./internal/progress (A1111's protocol: id_task, id_live_preview, live_preview).

function request(url, data, onSuccess, onError) {
    fetch(url, {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        credentials: "same-origin",
        body: JSON.stringify(data),
    }).then(function(response) {
        if (!response.ok) {
            throw new Error("HTTP " + response.status);
        }
        return response.json();
    }).then(onSuccess).catch(function(e) {
        if (onError) {
            onError(e);
        }
    });
}

function pad2(x) {
    return x < 10 ? '0' + x : String(x);
}

function formatTime(secs) {
    if (secs > 3600) {
        return pad2(Math.floor(secs / 60 / 60)) + ":" + pad2(Math.floor(secs / 60) % 60) + ":" + pad2(Math.floor(secs) % 60);
    } else if (secs > 60) {
        return pad2(Math.floor(secs / 60)) + ":" + pad2(Math.floor(secs) % 60);
    }
    return Math.floor(secs) + "s";
}

var originalAppTitle = undefined;

function setTitle(progress) {
    if (originalAppTitle === undefined) {
        originalAppTitle = document.title;
    }
    var title = originalAppTitle;
    if (opts.show_progress_in_title && progress) {
        title = '[' + progress.trim() + '] ' + title;
    }
    if (document.title !== title) {
        document.title = title;
    }
}

function randomId() {
    return "task(" + Math.random().toString(36).slice(2, 7) + Math.random().toString(36).slice(2, 7) + Math.random().toString(36).slice(2, 7) + ")";
}

// Follow task id_task: a bar inside progressbarContainer, live previews over gallery; atEnd() when it finishes.
function requestProgress(id_task, progressbarContainer, gallery, atEnd, onProgress, inactivityTimeout) {
    inactivityTimeout = inactivityTimeout || 40;
    var dateStart = new Date();
    var wasEverActive = false;
    var period = Math.max(100, Number(opts.live_preview_refresh_period) || 1000);

    var divProgress = document.createElement('div');
    divProgress.className = 'progressDiv';
    divProgress.style.display = opts.show_progressbar === false ? "none" : "block";
    var divInner = document.createElement('div');
    divInner.className = 'progress';
    divProgress.appendChild(divInner);
    if (progressbarContainer) {
        progressbarContainer.prepend(divProgress);
    }

    var livePreview = null;
    if (gallery && opts.live_previews_enable !== false) {
        livePreview = document.createElement('div');
        livePreview.className = 'livePreview';
        gallery.appendChild(livePreview);
    }

    var done = false;
    var removeProgressBar = function() {
        if (done) {
            return;
        }
        done = true;
        setTitle("");
        divProgress.remove();
        if (livePreview) {
            livePreview.remove();
        }
        atEnd();
    };

    var funProgress = function() {
        request("./internal/progress", {id_task: id_task, live_preview: false}, function(res) {
            if (done) {
                return;
            }
            if (res.completed) {
                removeProgressBar();
                return;
            }
            var text = "";
            if (res.progress !== null && res.progress !== undefined) {
                var percent = (res.progress * 100).toFixed(0) + "%";
                divInner.style.width = (res.progress * 100) + "%";
                text = percent;
                setTitle(percent);
                if (res.sampling_steps) {
                    text += " · step " + res.sampling_step + "/" + res.sampling_steps;
                }
                if (res.job_count > 1) {
                    text += " · batch " + Math.min(res.job_no + 1, res.job_count) + "/" + res.job_count;
                }
                if (res.eta) {
                    text += " · ETA " + formatTime(res.eta);
                }
            }
            if (res.textinfo) {
                text = text ? text + " · " + res.textinfo : res.textinfo;
            }
            divInner.textContent = text;
            divInner.classList.toggle('queued', !res.active);

            var elapsed = (new Date() - dateStart) / 1000;
            if (res.active) {
                wasEverActive = true;
            }
            if (!res.active && wasEverActive) {
                removeProgressBar();
                return;
            }
            if (elapsed > inactivityTimeout && !res.queued && !res.active) {
                removeProgressBar();
                return;
            }
            if (onProgress) {
                onProgress(res);
            }
            setTimeout(funProgress, Math.min(period, 500));
        }, removeProgressBar);
    };

    var funLivePreview = function(idLivePreview) {
        request("./internal/progress", {id_task: id_task, id_live_preview: idLivePreview, live_preview: true}, function(res) {
            if (done) {
                return;
            }
            if (res.live_preview) {
                var img = new Image();
                img.onload = function() {
                    if (done) {
                        return;
                    }
                    livePreview.replaceChildren(img);
                };
                img.src = res.live_preview;
            }
            setTimeout(function() {
                funLivePreview(res.id_live_preview);
            }, period);
        }, removeProgressBar);
    };

    funProgress();
    if (livePreview) {
        funLivePreview(-1);
    }
}
